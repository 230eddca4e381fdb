"""The start-up check of daphne_compat's private parts, and the plain path it falls back to."""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from httpx_sse import connect_sse
from rest_framework.authtoken.models import Token

from config.devservers import wait_for_port
from realtime import daphne_compat, daphne_probe
from realtime.events import job_topic
from realtime.publish import publish_now
from tests.fixtures.files import csv_bytes, product_rows, upload
from tests.fixtures.services import ROOT, Daphne


def test_every_private_part_is_where_the_pinned_versions_have_it():
    import daphne.server  # noqa: F401 (what a daphne process has loaded)

    assert daphne_probe.missing_parts() == {}
    # the list is explicit: what the writers, the guard, the closes and the hub read
    names = {name for _, _, name in daphne_probe.REQUIRED}
    assert {"handle_reply", "_tempDataLen", "send_queue", "chunked", "channels"} <= names


def test_a_missing_part_is_reported_by_name_and_its_feature_turned_off(monkeypatch, caplog):
    from twisted.web import http

    monkeypatch.delattr(http.Request, "chunked")
    missing = daphne_probe.missing_parts()
    assert missing == {"direct_writes": ["daphne.http_protocol.WebRequest.chunked"]}
    with caplog.at_level(logging.ERROR, logger="realtime.daphne_compat"):
        daphne_probe.report(missing)
    assert "direct_writes is off" in caplog.text
    assert "daphne.http_protocol.WebRequest.chunked missing" in caplog.text


def _daphne_send(protocol):
    """``send`` as daphne makes it for a connection: ``partial(server.handle_reply, protocol)``."""
    from daphne.server import Server

    server = Server.__new__(Server)
    server.connections = {}
    return functools.partial(server.handle_reply, protocol)


def test_with_the_buffer_internals_missing_the_guard_watches_the_public_producer_pause(
    monkeypatch,
):
    from daphne.http_protocol import WebRequest

    monkeypatch.setattr(daphne_compat, "disabled", frozenset({"direct_writes", "unsent_guard"}))
    transport = SimpleNamespace(producerPaused=False)
    request = WebRequest.__new__(WebRequest)
    request.channel = SimpleNamespace(transport=transport)
    send = _daphne_send(request)
    assert daphne_compat.chunk_writer(send) is None  # the plain path: daphne's own send
    unsent = daphne_compat.unsent_bytes(send)
    assert unsent is not None and unsent() == 0
    transport.producerPaused = True  # Twisted: more than 64 KiB waiting for this client
    assert unsent() > 64 * 1024


class MovedPartsDaphne(Daphne):
    """daphne on a Twisted whose private parts moved (tests/realtime/daphne_moved_parts.py)."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "realtime" / "daphne_moved_parts.py"),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "config.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)


@pytest.mark.django_db(transaction=True)
def test_streams_work_on_the_plain_path_when_private_parts_moved(api, operator, daphne_env):
    server = MovedPartsDaphne({**daphne_env, "REALTIME_QUEUE_SIZE": "20"})
    server.start()
    try:
        resp = api.post(
            "/api/v1/products/import",
            {"file": upload(csv_bytes(product_rows(5)))},
            format="multipart",
        )
        job_id = resp.json()["id"]
        token = Token.objects.get_or_create(user=operator)[0].key
        received = []

        def follow():
            with (
                httpx.Client(timeout=20) as http,
                connect_sse(
                    http,
                    "GET",
                    f"{server.url}/api/v1/jobs/{job_id}/events",
                    headers={"Authorization": f"Token {token}"},
                ) as source,
            ):
                for sse in source.iter_sse():
                    if sse.event != "heartbeat" and sse.data:
                        received.append(sse.event)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        time.sleep(1.0)
        publish_now("job.stage", topics=[job_topic(job_id)], body={"job": {"id": job_id}})
        publish_now(
            "job.completed",
            topics=[job_topic(job_id)],
            body={"job": {"id": job_id, "status": "completed"}},
            terminal=True,
        )
        reader.join(20)
        assert received == ["snapshot", "job.stage", "job.completed"]

        # the guard still holds a client that stops reading to its bounded queue
        import socket

        from tests.realtime.test_streams_live import FLOOD, _flood_then_read

        other = api.post(
            "/api/v1/products/import",
            {"file": upload(csv_bytes(product_rows(5)))},
            format="multipart",
        ).json()["id"]
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(
                f"GET /api/v1/jobs/{other}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Token {token}\r\nConnection: close\r\n\r\n".encode()
            )
            time.sleep(1.0)
            data = _flood_then_read(sock, job_topic(other), pause=2.0)
        assert b"event: reset" in data and b"too_slow" in data
        assert data.count(b"event: job.stage") < FLOOD  # not all buffered for it
    finally:
        server.stop()
    log = (ROOT / "var" / f"daphne-test-{server.port}.log").read_text()
    assert "direct_writes is off" in log and "unsent_guard is off" in log
    assert "twisted.internet.tcp.Connection.dataBuffer" in log
