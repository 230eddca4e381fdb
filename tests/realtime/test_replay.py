"""What a client that was away gets: every event after its cursor, exactly once."""

from __future__ import annotations

import json

import httpx
import pytest
from httpx_sse import connect_sse
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect as ws_connect

from realtime.events import job_topic
from realtime.publish import publish_now
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _job(api):
    resp = api.post(
        "/api/v1/products/import", {"file": upload(csv_bytes(product_rows(5)))}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def _auth(user):
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _kill_pubsub_clients(redis) -> int:
    """Cut the Pub/Sub connections of this run's Redis database only: ``CLIENT KILL TYPE
    pubsub`` is server-wide, and the browser tests' run shares the server."""
    db = int(redis.connection_pool.connection_kwargs.get("db") or 0)
    ours = [c for c in redis.client_list(_type="pubsub") if int(c.get("db", -1)) == db]
    for client in ours:
        redis.client_kill_filter(_id=client["id"])
    return len(ours)


def test_a_resume_after_missing_two_progress_events_gets_both(live, api, operator):
    job_id = _job(api)
    topic = job_topic(job_id)
    body = {"job": {"id": job_id, "status": "processing"}}
    seen = publish_now("job.stage", topics=[topic], body=body)[0]["id"]
    missed = [
        publish_now("job.progress", topics=[topic], body={**body, "n": n})[0]["id"] for n in (1, 2)
    ]
    last = publish_now(
        "job.completed", topics=[topic], body={"job": {**body["job"], "status": "completed"}}
    )[0]["id"]

    received = []
    with (
        httpx.Client(timeout=10) as http,
        connect_sse(
            http,
            "GET",
            f"{live.url}/api/v1/jobs/{job_id}/events",
            headers={**_auth(operator), "Last-Event-ID": seen},
        ) as source,
    ):
        for sse in source.iter_sse():
            if sse.data and sse.event != "heartbeat":
                received.append((sse.event, sse.id))
    assert received == [
        ("job.progress", missed[0]),
        ("job.progress", missed[1]),
        ("job.completed", last),
    ]

    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/", additional_headers=_auth(operator)
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [topic], "last_event_id": seen}))
        got = []
        while len(got) < 3:
            message = json.loads(ws.recv(timeout=10))
            if message["type"] != "heartbeat":
                got.append(message)
    assert [(e["type"], e["id"]) for e in got] == received


def test_events_published_while_the_hubs_pub_sub_reconnects_still_arrive(live, api, operator):
    """Redis Pub/Sub drops what is published while a subscriber reconnects; the hub replays it
    from the log, so a follower still gets every event and the terminal one."""
    import threading

    from realtime.redis import client as redis_client

    job_id = _job(api)
    topic = job_topic(job_id)
    body = {"job": {"id": job_id, "status": "processing"}}
    received = []
    subscribed = threading.Event()

    def follow():
        with (
            httpx.Client(timeout=20) as http,
            connect_sse(
                http, "GET", f"{live.url}/api/v1/jobs/{job_id}/events", headers=_auth(operator)
            ) as source,
        ):
            for sse in source.iter_sse():
                if sse.event == "snapshot":
                    subscribed.set()
                elif sse.data and sse.event != "heartbeat":
                    received.append((sse.event, sse.id))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert subscribed.wait(10)
    published = []
    for n in range(5):
        # cut every Pub/Sub connection (daphne's hub among them) and publish at once, while
        # they reconnect: plain Pub/Sub never delivers these
        killed = _kill_pubsub_clients(redis_client())
        assert killed or n, "daphne's hub had no Pub/Sub connection to cut"
        for event_type in ("job.stage", "job.progress"):
            env = publish_now(event_type, topics=[topic], body={**body, "n": n})[0]
            published.append((event_type, env["id"]))
    done = {"job": {**body["job"], "status": "completed"}}
    env = publish_now("job.completed", topics=[topic], body=done, terminal=True)[0]
    published.append(("job.completed", env["id"]))
    reader.join(20)
    assert not reader.is_alive(), f"no terminal event: got {len(received)} of {len(published)}"
    assert received == published  # every one, once, in order


def test_the_hub_watches_the_layers_pub_sub_connections():
    """The replay after a reconnect hangs on channels-redis' and redis-py's internals: fail
    here, not silently in production, when an upgrade moves them."""
    import asyncio

    from realtime.hub import Hub

    def listener(messages):
        pass

    async def scenario():
        hub = Hub()
        topic = "job:00000000-0000-0000-0000-00000000000a"
        await hub.subscribe(topic, listener)
        try:
            return len(hub._watched), hub._watch_failed, hub.last_ids[topic]
        finally:
            await hub.unsubscribe(topic, listener)
            await hub.layer.flush()

    watched, failed, start = asyncio.run(scenario())
    assert watched >= 1 and not failed
    assert start == "0-0"  # an empty log: a replay would start at its beginning
