"""Streams against a real daphne process, real Redis and a real worker."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest
from django.test import override_settings
from httpx_sse import connect_sse
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect as ws_connect

from imports.jobs import schedule_lost_worker_check
from imports.models import ImportJob
from realtime.events import job_topic, org_topic
from realtime.log import read_after
from realtime.redis import client as redis_client
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(user):
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


def _upload(api, rows=50, **fields):
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(csv_bytes(product_rows(rows))), **fields},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def _sse_events(url, headers, *, stop=None, timeout=30.0, params=None):
    """Read SSE events (not heartbeats) until the server closes or ``stop(event)`` is true."""
    out = []
    time.monotonic() + timeout
    with (
        httpx.Client(timeout=timeout) as http,
        connect_sse(http, "GET", url, headers=headers, params=params) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            if sse.event == "heartbeat" or not sse.data:  # the retry-only first frame
                continue
            out.append((sse.event, sse.id, json.loads(sse.data)))
            if stop and stop(out[-1]):
                break
    return out


class Reader(threading.Thread):
    """Follow a stream in the background while the test runs a worker."""

    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as exc:  # surfaced by join()
            self.error = exc

    def join(self, timeout=60):
        super().join(timeout)
        assert not self.is_alive(), "stream reader did not finish"
        if self.error:
            raise self.error
        return self.result


def test_job_stream_snapshot_first_then_every_event_then_closes(live, api, operator, run_worker):
    job_id = _upload(api, rows=120, batch_size="40")
    url = f"{live.url}/api/v1/jobs/{job_id}/events"
    reader = Reader(_sse_events, url, _headers(operator))
    reader.start()
    time.sleep(1.0)
    run_worker()
    received = reader.join()
    types = [t for t, _, _ in received]
    assert types[0] == "snapshot"
    assert types[-1] == "job.completed"
    assert received[-1][2]["job"]["processed_rows"] == 120
    logged = [e["id"] for e in read_after(job_topic(job_id), received[0][1]).events]
    assert [i for _, i, _ in received[1:]] == logged  # each logged event once, in order

    # a reconnect at the terminal event: 204, so EventSource stops retrying
    resp = httpx.get(url, headers={**_headers(operator), "Last-Event-ID": received[-1][1]})
    assert resp.status_code == 204


def test_resume_after_a_cut_gets_every_later_event_exactly_once(live, api, operator, run_worker):
    job_id = _upload(api, rows=100, batch_size="10")
    run_worker()
    logged = read_after(job_topic(job_id), None).events
    cut = logged[3]["id"]
    url = f"{live.url}/api/v1/jobs/{job_id}/events"
    for how in ("header", "query"):
        headers = _headers(operator)
        params = None
        if how == "header":
            headers["Last-Event-ID"] = cut
        else:
            params = {"last_event_id": cut}
        received = _sse_events(url, headers, params=params)
        assert [i for _, i, _ in received] == [e["id"] for e in logged[4:]]


def test_cursor_older_than_the_log_gets_a_reset_with_the_current_state(
    live, api, operator, run_worker
):
    job_id = _upload(api, rows=20)
    run_worker()
    redis_client().xtrim(f"intake:log:{job_topic(job_id)}", maxlen=1)
    received = _sse_events(
        f"{live.url}/api/v1/jobs/{job_id}/events",
        {**_headers(operator), "Last-Event-ID": "1-0"},
    )
    assert received[0][0] == "reset"
    assert received[0][2]["job"]["status"] == "completed"
    assert received[0][2]["reason"] == "cursor_expired"


def test_sse_and_websocket_see_the_same_events_in_the_same_order(live, api, operator, run_worker):
    job_id = _upload(api, rows=90, batch_size="30")
    topic = job_topic(job_id)
    sse = Reader(_sse_events, f"{live.url}/api/v1/jobs/{job_id}/events", _headers(operator))

    def ws_events():
        out = []
        with ws_connect(
            f"ws://127.0.0.1:{live.port}/ws/v1/stream/",
            additional_headers=_headers(operator),
            origin=f"http://127.0.0.1:{live.port}",
        ) as ws:
            ws.send(json.dumps({"action": "subscribe", "topics": [topic]}))
            while True:
                msg = json.loads(ws.recv(timeout=30))
                if msg["type"] == "heartbeat":
                    continue
                out.append((msg["type"], msg.get("id")))
                if msg["type"] == "job.completed":
                    return out

    ws = Reader(ws_events)
    sse.start()
    ws.start()
    time.sleep(1.0)
    run_worker()
    from_sse = [(t, i) for t, i, _ in sse.join()]
    from_ws = ws.join()
    assert from_sse[0][0] == from_ws[0][0] == "snapshot"
    assert from_sse[1:] == from_ws[1:]
    assert from_sse[-1][0] == "job.completed"


def _segments_received(sock) -> int:
    """TCP segments that arrived on ``sock`` so far: Linux's ``tcp_info.tcpi_segs_in``, the
    32-bit field at byte 140 of ``struct tcp_info``."""
    import socket
    import struct

    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 140)[0]


def test_a_streams_terminal_event_and_the_end_of_its_body_arrive_in_one_write(live, api, operator):
    """A client that keeps up gets its job's terminal event and the end of the response in
    one write (one TCP segment), not a second write for the body's end once the stream
    closes."""
    import socket

    from realtime.publish import publish_now

    job_id = _upload(api)
    token = Token.objects.get_or_create(user=operator)[0].key
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.settimeout(10)
        sock.sendall(
            f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {token}\r\n\r\n".encode()
        )
        data = b""
        while b"event: heartbeat" not in data:  # the next is a second away (these tests' period)
            data += sock.recv(1 << 16)
        assert b"event: snapshot" in data
        before = _segments_received(sock)
        publish_now(
            "job.completed",
            topics=[job_topic(job_id)],
            body={"job": {"id": job_id, "status": "completed"}},
            terminal=True,
        )
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            read = sock.recv(1 << 16)
            assert read, data
            data += read
        time.sleep(0.3)  # anything the server would still send after the body's end
        segments = _segments_received(sock) - before
    assert b"event: job.completed" in data
    assert data.count(b"0\r\n\r\n") == 1, data
    assert segments == 1, (segments, data)


def test_heartbeats_arrive_and_a_disconnect_frees_the_stream_slot(live, api, operator):
    job_id = _upload(api)
    url = f"{live.url}/api/v1/jobs/{job_id}/events"
    key = f"intake:streams:user:{operator.pk}"
    with (
        httpx.Client(timeout=10) as http,
        connect_sse(http, "GET", url, headers=_headers(operator)) as src,
    ):
        assert src.response.headers["cache-control"] == "no-cache"
        assert src.response.headers["x-accel-buffering"] == "no"
        started = time.monotonic()
        seen = []
        # Hold the iterator: a generator dropped after ``break`` is finalized at once, and
        # httpx then closes the response, so the server saw a disconnect (and freed the
        # slot) before the assertion below could see the slot taken, now and then.
        events = src.iter_sse()
        for sse in events:
            seen.append((sse.event, sse.data[:200]))
            if sse.event == "heartbeat":
                assert abs(json.loads(sse.data)["timestamp"] / 1000 - time.time()) < 5
                break
        assert seen[-1][0] == "heartbeat", seen
        assert time.monotonic() - started < 3
        assert redis_client().zcard(key) == 1, (seen, redis_client().keys("intake:streams:*"))
    deadline = time.monotonic() + 1.5  # within one heartbeat (1 s in these tests)
    while redis_client().zcard(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client().zcard(key) == 0


def test_stream_limit_per_user(live, api, operator):
    job_id = _upload(api)
    url = f"{live.url}/api/v1/jobs/{job_id}/events"
    http = httpx.Client(timeout=10)
    opened = []
    try:
        for _ in range(4):  # the limit in these tests
            resp = http.send(
                http.build_request("GET", url, headers=_headers(operator)), stream=True
            )
            assert resp.status_code == 200
            opened.append(resp)
        refused = httpx.get(url, headers=_headers(operator))
        assert refused.status_code == 429 and "At most 4" in refused.json()["detail"]
    finally:
        for resp in opened:
            resp.close()
        http.close()


def test_other_tenants_topics_look_like_missing_ones(live, api, operator, outsider, org):
    job_id = _upload(api)
    missing = "7b1e5b8e-2a53-4bd4-9d7f-3a3bd0d2f1a0"
    for jid in (job_id, missing):
        resp = httpx.get(f"{live.url}/api/v1/jobs/{jid}/events", headers=_headers(outsider))
        assert resp.status_code == 404 and resp.json() == {"detail": "No such job."}
    resp = httpx.get(
        f"{live.url}/api/v1/realtime/events",
        headers=_headers(outsider),
        params={"topics": f"job:{job_id}"},
    )
    assert resp.status_code == 404
    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/",
        additional_headers=_headers(outsider),
        origin=f"http://127.0.0.1:{live.port}",
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [org_topic(org.id)]}))
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=5)
        assert "4404" in str(closed.value)


def test_anonymous_and_bad_tokens_are_refused(live, api, operator):
    job_id = _upload(api)
    url = f"{live.url}/api/v1/jobs/{job_id}/events"
    assert httpx.get(url).status_code == 401
    api_token = Token.objects.get(user=operator).key
    resp = httpx.get(url, params={"token": api_token})
    assert resp.status_code == 401 and "not accepted in URLs" in resp.json()["detail"]
    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/", origin=f"http://127.0.0.1:{live.port}"
    ) as ws:
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1008  # policy violation: not authenticated


def test_a_session_cookie_authenticates_sse_and_websocket(live, api, operator, client):
    job_id = _upload(api)
    client.force_login(operator)
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    url = f"{live.url}/api/v1/jobs/{job_id}/events"
    first = _sse_events(url, cookie, stop=lambda e: True)
    assert first[0][0] == "snapshot" and first[0][2]["job"]["id"] == job_id
    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/",
        additional_headers=cookie,
        origin=f"http://127.0.0.1:{live.port}",
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(job_id)]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
    # a session that was logged out (or never existed) is anonymous
    client.logout()
    assert httpx.get(url, headers=cookie).status_code == 401
    assert httpx.get(url, headers={"Cookie": "sessionid=nosuchsession"}).status_code == 401


def test_websocket_clients_are_told_the_server_restarts(api, operator, daphne_env):
    from tests.fixtures.services import Daphne

    job_id = _upload(api)
    server = Daphne(daphne_env)  # our own daphne: this test stops it
    server.start()
    try:
        with ws_connect(
            f"ws://127.0.0.1:{server.port}/ws/v1/stream/",
            additional_headers=_headers(operator),
            origin=f"http://127.0.0.1:{server.port}",
        ) as ws:
            ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(job_id)]}))
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises(Exception) as closed:
                while True:
                    ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1012  # service restart: reconnect
        assert server.proc.wait(10) == 0
        # the stream's slot went with it: the user may open as many streams as before
        assert redis_client().zcard(f"intake:streams:user:{operator.pk}") == 0
    finally:
        server.stop()


FLOOD = 1200  # stage events of 20 kB each (24 MB), never coalesced


def _flood_then_read(sock, topic: str, *, pause: float = 0.0, until=None) -> bytes:
    """Publish ``FLOOD`` big stage events to ``topic`` while the client on ``sock`` reads
    nothing, wait ``pause`` seconds, then read what the server sent: until it closes, ``until``
    (given the bytes so far) says enough, or 30 s."""
    from realtime.publish import publish_now

    padding = "x" * 20_000
    for n in range(FLOOD):
        publish_now("job.stage", topics=[topic], body={"n": n, "pad": padding})
    time.sleep(pause)
    data = b""
    sock.settimeout(5)
    deadline = time.monotonic() + 30
    with contextlib.suppress(TimeoutError):
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break  # the server closed the stream
            data += chunk
            if until is not None and until(data):
                break
    return data


@contextlib.contextmanager
def _unread_stream(api, operator, daphne_env, request):
    """A daphne of its own that queues at most 20 events per stream, a job, and a client socket
    with a small receive buffer that has sent ``request(job_id, port, token)`` and read
    nothing yet. Yields the socket and the job's topic."""
    import socket

    from tests.fixtures.services import Daphne

    job_id = _upload(api)
    server = Daphne({**daphne_env, "REALTIME_QUEUE_SIZE": "20"})
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(request(job_id, server.port, Token.objects.get(user=operator).key))
            yield sock, job_topic(job_id)
    finally:
        server.stop()


def test_a_client_that_stops_reading_gets_a_reset_not_an_endless_server_buffer(
    api, operator, daphne_env
):
    """Backpressure end to end: a reader that stops reading fills its socket; then its events
    wait in its bounded queue (Twisted would buffer without limit) and, past the queue, the
    stream is reset and closed. Everything it was sent arrives in order, then the reset."""

    def request(job_id, port, token):
        return (
            f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Token {token}\r\nConnection: close\r\n\r\n".encode()
        )

    with _unread_stream(api, operator, daphne_env, request) as (sock, topic):
        time.sleep(1.0)  # subscribed (its snapshot is on the way)
        data = _flood_then_read(sock, topic, pause=2.0)
    seen = [int(n) for n in re.findall(rb'"n": ?(\d+)', data)]
    assert b"event: reset" in data and b"too_slow" in data
    assert data.rfind(b"event: reset") > data.rfind(b"event: job.stage")
    assert seen == list(range(len(seen)))  # in order, none skipped, up to the reset
    assert 0 < len(seen) < FLOOD  # the rest was never buffered for this client


def _ws_frames(data: bytes):
    """(opcode, payload) for each whole frame a server sent (unmasked)."""
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, length, i = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        if i + length > len(data):
            break
        frames.append((opcode, data[i : i + length]))
        i += length
    return frames


def test_a_websocket_that_stops_reading_gets_a_reset_and_4408(api, operator, daphne_env):
    """The same backpressure on the WebSocket: a reader that stops reading gets every event
    it was sent, in order, then ``reset`` and a 4408 close, not an endless server buffer."""
    import base64

    def request(job_id, port, token):
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET /ws/v1/stream/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Authorization: Token {token}\r\n\r\n".encode()
        )

    with _unread_stream(api, operator, daphne_env, request) as (sock, topic):
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert b" 101 " in head, head
        payload = json.dumps({"action": "subscribe", "topics": [topic]}).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(bytes((0x81, 0x80 | len(payload))) + mask + masked)
        time.sleep(1.0)  # subscribed (its snapshot is on the way)
        # read at once, up to the close frame: what follows it is the server's business
        data = _flood_then_read(
            sock, topic, until=lambda d: any(op == 8 for op, _ in _ws_frames(d[-64:]))
        )
    frames = _ws_frames(data)
    texts = [json.loads(body) for op, body in frames if op == 1]
    closes = [body for op, body in frames if op == 8]
    seen = [t["n"] for t in texts if t.get("type") == "job.stage"]
    assert texts[0]["type"] == "snapshot"
    assert texts[-1] == {"type": "reset", "reason": "too_slow"}
    assert closes and int.from_bytes(closes[0][:2], "big") == 4408
    assert seen == list(range(len(seen)))  # in order, none skipped, up to the reset
    assert 0 < len(seen) < FLOOD  # the rest was never buffered for this client


def test_a_large_response_read_slowly_arrives_whole_and_in_order(live):
    """daphne writes straight to the socket when nothing is buffered (realtime.daphne_compat):
    a body of many writes, read late and slowly, still arrives byte for byte. (The partial
    write itself is tested in test_core: the kernel buffers more than this on loopback.)"""
    import hashlib
    import socket
    from pathlib import Path

    import drf_spectacular_sidecar

    rel = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    expected = (Path(drf_spectacular_sidecar.__file__).parent / "static" / rel).read_bytes()
    assert len(expected) > 1_000_000
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # fill up quickly
        sock.sendall(f"GET /static/{rel} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        time.sleep(1.0)  # let the server run into a full socket and buffer the rest
        data = b""
        while len(data) < len(expected) + 200 or b"\r\n\r\n" not in data:
            chunk = sock.recv(8192)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if b"200 OK" in head and len(body) >= len(expected):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"200 OK" in head, head
    assert hashlib.sha256(body[: len(expected)]).digest() == hashlib.sha256(expected).digest()


def test_stream_tokens_are_scoped_and_expire(live, api, operator):
    job_id = _upload(api)
    other_id = _upload(api)
    resp = api.post(
        "/api/v1/realtime/tokens", {"topics": [f"job:{job_id}"], "ttl": 3}, format="json"
    )
    assert resp.status_code == 201
    token = resp.json()["token"]
    ok = _sse_events(
        f"{live.url}/api/v1/jobs/{job_id}/events", {}, params={"token": token}, stop=lambda e: True
    )
    assert ok[0][0] == "snapshot"
    scoped = httpx.get(f"{live.url}/api/v1/jobs/{other_id}/events", params={"token": token})
    assert scoped.status_code == 404
    time.sleep(3.1)
    expired = httpx.get(f"{live.url}/api/v1/jobs/{job_id}/events", params={"token": token})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert (
        api.post("/api/v1/realtime/tokens", {"topics": ["job:nope"]}, format="json").status_code
        == 404
    )


def test_activity_feed_narrowed_to_one_job(live, api, operator, run_worker):
    first = _upload(api, rows=10)
    second = _upload(api, rows=10)
    reader = Reader(
        _sse_events,
        f"{live.url}/api/v1/realtime/events",
        _headers(operator),
        params={"topics": f"job:{second}"},
        stop=lambda e: e[0] == "job.completed",
    )
    reader.start()
    time.sleep(1.0)
    run_worker()
    received = reader.join()
    assert [e[0] for e in received][:2] == ["job.started", "job.stage"]
    assert received[-1][0] == "job.completed"
    assert {e[2]["job"]["id"] for e in received} == {second}
    assert first != second


def test_summary_stream_honours_limit_and_poll_interval(live, api, operator, run_worker):
    _upload(api, rows=5)
    _upload(api, rows=5)
    url = f"{live.url}/api/v1/products/import/stream"
    arrivals = []

    def stop(event):
        arrivals.append(time.monotonic())
        return event[2]["completed"] == 2

    reader = Reader(
        _sse_events,
        url,
        _headers(operator),
        params={"poll_interval": "1.5", "limit": "1"},
        stop=stop,
    )
    reader.start()
    time.sleep(0.5)
    run_worker()
    events = reader.join()
    assert {e[0] for e in events} == {"status"}
    first, last = events[0][2], events[-1][2]
    assert first["total_jobs"] == 2 and first["queued"] == 2 and len(first["last_jobs"]) == 1
    assert last["completed"] == 2 and len(last["last_jobs"]) == 1
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert gaps and min(gaps) >= 1.4  # at most one summary per poll_interval
    for bad in ({"poll_interval": "0.1"}, {"poll_interval": "31"}, {"limit": "51"}):
        resp = httpx.get(url, headers=_headers(operator), params=bad)
        assert resp.status_code == 400, bad


def test_activity_feed_with_summary_is_one_connection_for_a_dashboard(
    live, api, operator, run_worker
):
    job_id = _upload(api, rows=5)
    url = f"{live.url}/api/v1/realtime/events"
    reader = Reader(
        _sse_events,
        url,
        _headers(operator),
        params={"summary": "1", "limit": "0", "poll_interval": "0.5"},
        stop=lambda e: e[0] == "status" and e[2]["completed"] == 1,
    )
    reader.start()
    time.sleep(0.5)
    run_worker()
    received = reader.join()
    types = [t for t, _, _ in received]
    assert types[0] == "status" and received[0][2]["queued"] == 1  # the summary at once
    assert "job.completed" in types  # and the job events, in the same stream
    assert received[-1][2]["last_jobs"] == []  # limit=0
    assert all(e[2]["job"]["id"] == job_id for e in received if e[0].startswith("job."))
    resp = httpx.get(url, headers=_headers(operator), params={"summary": "1", "limit": "99"})
    assert resp.status_code == 400 and "limit" in resp.json()["detail"]


def test_poll_endpoint_uses_the_same_cursor(api, operator, run_worker):
    job_id = _upload(api, rows=30, batch_size="10")
    run_worker()
    topic = job_topic(job_id)
    everything = api.get("/api/v1/realtime/poll", {"topic": topic}).json()
    ids = [e["id"] for e in everything["events"]]
    later = api.get("/api/v1/realtime/poll", {"topic": topic, "after": ids[1]}).json()
    assert [e["id"] for e in later["events"]] == ids[2:]
    assert later["cursor"] == ids[-1]
    assert api.get("/api/v1/realtime/poll", {"topic": "job:x", "after": "zz"}).status_code == 400


def test_metrics_for_staff(api, operator, client, django_user_model):
    staff = django_user_model.objects.create_user("root", password="pw-123456", is_staff=True)
    client.force_login(staff)
    body = client.get("/metrics").content.decode()
    assert "intake_open_streams" in body and "intake_publish_to_send_seconds_bucket" in body
    client.force_login(operator)
    assert client.get("/metrics").status_code == 403


@override_settings(
    REALTIME={**__import__("django.conf").conf.settings.REALTIME, "WORKER_LOST_AFTER_SECONDS": 2}
)
def test_a_worker_killed_mid_job_is_reported_lost(api, org, daphne_env, media_root):
    job_id = _upload(api, rows=60_000, batch_size="50")
    env = {**daphne_env, "MEDIA_ROOT": media_root}
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "high", "default", "low"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while ImportJob.objects.get(pk=job_id).processed_rows == 0:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.2)
    finally:
        # RQ puts its work horse in a session of its own: kill both, as a crashed host would
        family = [worker.pid, *(c.pid for c in psutil.Process(worker.pid).children(recursive=True))]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.wait()
    time.sleep(2.5)
    from imports.recovery import check_jobs

    assert check_jobs().resumed == [job_id]  # resumed after its checkpoint, as attempt 2
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "queued" and job.attempt == 2 and job.checkpoint_row > 0
    last = read_after(job_topic(job_id), None).events[-1]
    assert last["type"] == "job.resumed" and last["reason"] == "worker_lost"
    assert last["attempt"] == 2
    schedule_lost_worker_check()  # still works, though workers now run the check themselves
    import django_rq

    scheduled = django_rq.get_queue("high").scheduled_job_registry.get_job_ids()
    assert "intake-check-lost-workers" in scheduled


def test_watch_job_command_follows_a_job_to_its_end(live, api, run_worker, capsys):
    from django.core.management import call_command

    job_id = _upload(api, rows=25)
    run_worker()
    call_command("watch_job", job_id, url=live.url)
    out = capsys.readouterr().out
    assert "completed: 25 created, 0 updated, 0 unchanged, 0 row errors" in out


def test_resume_after_the_log_expired_gets_the_final_state_and_ends(
    live, api, operator, run_worker
):
    job_id = _upload(api, rows=5)
    run_worker()
    last = read_after(job_topic(job_id), None).events[-1]["id"]
    redis_client().delete(f"intake:log:{job_topic(job_id)}")
    received = _sse_events(
        f"{live.url}/api/v1/jobs/{job_id}/events",
        {**_headers(operator), "Last-Event-ID": last},
        timeout=15,
    )
    assert [e[0] for e in received] == ["reset"]
    assert received[0][2]["job"]["status"] == "completed"
