"""Streams against odd and hostile clients: what a token narrowed to one job may see, cursors
at the edge of Redis's ids, ids written another way than the API writes them, replays that
would never end, and users removed while their stream is open."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from imports.models import Membership
from realtime import log, topics
from realtime.access import Principal
from realtime.consumers import status_key
from realtime.events import job_topic
from realtime.publish import publish_now
from realtime.streams import ClientStream
from tests.fixtures.enrichment import bom_csv
from tests.fixtures.files import upload
from tests.realtime.test_core import drain
from tests.realtime.test_stream_tokens import _first_sse_event, _token, _upload

pytestmark = pytest.mark.django_db(transaction=True)

MAX_ID = "18446744073709551615-18446744073709551615"


def test_a_token_for_one_job_resets_with_that_job_not_the_organizations_summary(live, api):
    mine, theirs = _upload(api), _upload(api)
    token = _token(api, job_topic(mine))
    event, body = _first_sse_event(
        f"{live.url}/api/v1/realtime/events",
        {"topics": job_topic(mine), "token": token, "last_event_id": "1-0"},
    )
    assert event == "reset" and body["reason"] == "cursor_expired"
    assert "status" not in body  # the summary lists every job of the organization
    assert [job["id"] for job in body["jobs"]] == [mine]
    assert theirs not in json.dumps(body)


def test_the_largest_event_id_is_refused_not_an_error(live, api):
    job = _upload(api)
    resp = api.get("/api/v1/realtime/poll", {"topic": job_topic(job), "after": MAX_ID})
    assert resp.status_code == 400 and "event id" in resp.json()["detail"], resp.content
    resp = httpx.get(
        f"{live.url}/api/v1/jobs/{job}/events",
        headers={"Authorization": api._credentials["HTTP_AUTHORIZATION"], "Last-Event-ID": MAX_ID},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/",
        additional_headers={"Authorization": api._credentials["HTTP_AUTHORIZATION"]},
    ) as ws:
        ws.send(
            json.dumps({"action": "subscribe", "topics": [job_topic(job)], "last_event_id": MAX_ID})
        )
        answer = json.loads(ws.recv(timeout=10))
        assert answer["type"] == "error" and "Bad last_event_id" in answer["detail"]
    assert log.valid_cursor("18446744073709551614-18446744073709551614")


def test_an_upper_case_job_id_in_the_path_follows_the_jobs_events(live, api):
    job = _upload(api)
    auth = {"Authorization": api._credentials["HTTP_AUTHORIZATION"]}
    seen = []
    with (
        httpx.Client(timeout=10, headers=auth) as http,
        connect_sse(http, "GET", f"{live.url}/api/v1/jobs/{job.upper()}/events") as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            if sse.event == "heartbeat" or not sse.data:
                continue
            seen.append(sse.event)
            if sse.event == "snapshot":
                publish_now("job.stage", topics=[job_topic(job)], body={"job": {"id": job}})
            if sse.event == "job.stage":
                break
    assert seen == ["snapshot", "job.stage"]


def test_ids_written_otherwise_are_no_topic_where_the_topic_is_named(live, api):
    """Authorized, they found the object, but its events go out under the id as the API
    writes it: the stream got its snapshot and then nothing, for ever."""
    job = _upload(api)
    bom = api.post(
        "/api/v1/boms",
        {"file": upload(bom_csv([("R1", "1", "RC0603", "", "", "")]), "b.csv")},
        format="multipart",
    ).json()["id"]
    auth = {"Authorization": api._credentials["HTTP_AUTHORIZATION"]}
    assert topics.parse(f"job:{job}\n") is None
    for topic in (job_topic(job.upper()), f"bom:0{bom}"):
        resp = api.post("/api/v1/realtime/tokens", {"topics": [topic]}, format="json")
        assert resp.status_code in (400, 404), (topic, resp.content)
    for topic in (job_topic(job.upper()), f"bom:0{bom}"):
        with ws_connect(f"ws://127.0.0.1:{live.port}/ws/v1/stream/", additional_headers=auth) as ws:
            ws.send(json.dumps({"action": "subscribe", "topics": [topic]}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 4404, topic
    resp = httpx.get(
        f"{live.url}/api/v1/realtime/events",
        params={"topics": job_topic(job.upper())},
        headers=auth,
        timeout=10,
    )
    assert resp.status_code == 404, resp.text
    # the BOM's own stream takes the id as a number: /stream/0<id> is BOM <id>
    token = _token(api, f"bom:{bom}")
    event, body = _first_sse_event(f"{live.url}/api/v1/enrichment/stream/0{bom}", {"token": token})
    assert event == "snapshot" and body["bom_id"] == bom


@pytest.mark.parametrize(("asked", "shared"), [("0.5000001", 0.5), ("0.74", 0.5), ("2.3", 2.5)])
def test_summary_intervals_share_a_feed_by_the_half_second(asked, shared, org):
    principal = Principal(user_id=1, organization_id=org.id, role="viewer")
    assert status_key({"poll_interval": asked}, principal)[1] == shared


def _publish(topic, n):
    body = {"job": {"id": topic.partition(":")[2]}}
    return [publish_now("job.stage", topics=[topic], body=body)[0]["id"] for _ in range(n)]


async def _state(topic):
    return {"job": {"id": topic}}


def test_a_replay_longer_than_one_read_resets_instead_of_skipping_the_rest(monkeypatch):
    """The log read stops at REPLAY_MAX events: a stream resumed further back went on after
    the last one it read, past everything up to the live feed (a job's end among them)."""
    monkeypatch.setattr(log, "REPLAY_MAX", 3)
    topic = "job:00000000-0000-0000-0000-0000000000a1"
    cursor = _publish(topic, 1)[0]
    _publish(topic, 4)

    async def resume():
        stream = ClientStream()
        await stream.subscribe(topic, cursor, _state)
        got = drain(stream)
        await stream.close()
        return got

    (only,) = asyncio.run(resume())
    assert only.type == "reset" and json.loads(only.data)["reason"] == "replay_limit"


def test_resubscribing_without_reading_does_not_pile_up_replays(monkeypatch):
    monkeypatch.setattr(log, "REPLAY_MAX", 5)
    first, second = (f"job:00000000-0000-0000-0000-0000000000b{n}" for n in (1, 2))
    cursors = {t: _publish(t, 1)[0] for t in (first, second)}
    for t in (first, second):
        _publish(t, 4)

    async def scenario():
        stream = ClientStream()
        for _ in range(3):  # subscribe, unsubscribe, again: what was unsent is let go
            await stream.subscribe(first, cursors[first], _state)
            assert len(stream.queue) == 4
            await stream.unsubscribe(first)
            assert not stream.queue and stream._replayed == 0
        await stream.subscribe(first, cursors[first], _state)
        # a second topic's replay would take the unsent replays past REPLAY_MAX: a reset
        await stream.subscribe(second, cursors[second], _state)
        got = drain(stream)
        await stream.close()
        return got

    got = asyncio.run(scenario())
    assert [i.type for i in got] == ["job.stage"] * 4 + ["reset"]
    assert json.loads(got[-1].data)["reason"] == "replay_limit"


def test_a_user_removed_from_the_organization_subscribes_to_nothing_more(live, api, operator):
    first, second = _upload(api), _upload(api)
    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/",
        additional_headers={"Authorization": api._credentials["HTTP_AUTHORIZATION"]},
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(first)]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        Membership.objects.filter(user=operator).delete()
        ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(second)]}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = json.loads(ws.recv(timeout=10))
                assert message["type"] == "heartbeat", message
    assert closed.value.rcvd.code == 1008


def test_an_open_stream_ends_once_its_user_is_no_longer_a_member(monkeypatch, org, operator):
    """Checked at a heartbeat, once a minute: the stream was open for as long as the client
    liked, carrying the organization's events to someone removed from it."""
    from realtime import consumers
    from realtime.access import still_member

    principal = Principal(user_id=operator.id, organization_id=org.id, role="operator")
    assert still_member.func(principal)
    Membership.objects.filter(user=operator).delete()
    assert not still_member.func(principal)
    asked = []

    async def no_longer(who):  # as still_member answers now, without a thread of its own
        asked.append(who)
        return False

    monkeypatch.setattr(consumers, "still_member", no_longer)
    monkeypatch.setattr(consumers, "heartbeat_seconds", lambda: 0.01)
    monkeypatch.setattr(consumers, "MEMBERSHIP_CHECK_SECONDS", 0.0)
    sent = []

    class Slot:
        async def refresh(self):
            pass

    async def send(message):
        sent.append(message)

    async def pump():
        stream = ClientStream()
        await asyncio.wait_for(
            consumers.ActivitySSE()._pump(
                stream, send, asyncio.Event(), Slot(), lambda: 0, principal
            ),
            timeout=10,
        )

    asyncio.run(pump())  # returns: the response ends
    assert asked == [principal] and sent and all(b"heartbeat" in m["body"] for m in sent)
