"""Several daphne processes sharing one Redis: what a load balancer in front of them gives."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from httpx_sse import connect_sse
from websockets.sync.client import connect as ws_connect

from realtime.events import job_topic
from realtime.log import read_after
from realtime.publish import publish_now
from tests.fixtures.services import Daphne
from tests.realtime.test_streams_live import Reader, _headers, _sse_events, _upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_daphnes(daphne_env):
    servers = [Daphne(daphne_env), Daphne(daphne_env)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _ws_events(port, headers, topic):
    out = []
    with ws_connect(
        f"ws://127.0.0.1:{port}/ws/v1/stream/",
        additional_headers=headers,
        origin=f"http://127.0.0.1:{port}",
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [topic]}))
        while True:
            msg = json.loads(ws.recv(timeout=30))
            if msg["type"] == "heartbeat":
                continue
            out.append((msg["type"], msg.get("id")))
            if msg["type"] == "job.completed":
                return out


def test_a_client_on_each_process_sees_the_same_events_in_the_same_order(
    two_daphnes, api, operator, run_worker
):
    first, second = two_daphnes
    job_id = _upload(api, rows=90, batch_size="30")
    readers = [
        Reader(_sse_events, f"{first.url}/api/v1/jobs/{job_id}/events", _headers(operator)),
        Reader(_sse_events, f"{second.url}/api/v1/jobs/{job_id}/events", _headers(operator)),
        Reader(_ws_events, second.port, _headers(operator), job_topic(job_id)),
    ]
    for reader in readers:
        reader.start()
    time.sleep(1.0)
    run_worker()
    on_first, on_second = ([(t, i) for t, i, _ in r.join()] for r in readers[:2])
    over_ws = readers[2].join()
    assert on_first[0][0] == on_second[0][0] == over_ws[0][0] == "snapshot"
    # the snapshot carries the log's newest id (the job was queued): the rest comes after it
    assert on_first[0][1] == on_second[0][1] == over_ws[0][1]
    after = read_after(job_topic(job_id), on_first[0][1]).events
    logged = [(e["type"], e["id"]) for e in after]
    assert on_first[1:] == on_second[1:] == over_ws[1:] == logged  # every event, once, in order
    assert logged[-1][0] == "job.completed"


def test_a_client_that_moves_to_the_other_process_resumes_with_no_gap_and_no_duplicate(
    two_daphnes, api, operator
):
    first, second = two_daphnes
    job_id = _upload(api)
    topic = job_topic(job_id)
    headers = _headers(operator)

    def stage(n):
        publish_now("job.stage", topics=[topic], body={"job": {"id": job_id}, "n": n})

    # on the first process: three events, then the connection drops
    seen = []
    with (
        httpx.Client(timeout=20) as http,
        connect_sse(http, "GET", f"{first.url}/api/v1/jobs/{job_id}/events", headers=headers) as s,
    ):
        events = s.iter_sse()
        for sse in events:
            if sse.event == "snapshot":
                for n in range(3):
                    stage(n)
            elif sse.event == "job.stage":
                seen.append(sse.id)
                if len(seen) == 3:
                    break
    # published while it reconnects
    for n in range(3, 6):
        stage(n)
    # on the second process, from its cursor: the missed ones from the log, then live ones
    resumed = Reader(
        _sse_events,
        f"{second.url}/api/v1/jobs/{job_id}/events",
        {**headers, "Last-Event-ID": seen[-1]},
    )
    resumed.start()
    time.sleep(1.0)
    for n in range(6, 8):
        stage(n)
    publish_now(
        "job.completed",
        topics=[topic],
        body={"job": {"id": job_id, "status": "completed"}},
        terminal=True,
    )
    after = [i for _, i, _ in resumed.join()]
    logged = [e["id"] for e in read_after(topic, None).events if e["type"] != "job.queued"]
    assert seen + after == logged
    assert len(set(seen + after)) == len(logged) == 9  # 8 stages and the end, each once
