"""The upload limit holds while the body arrives, against a real daphne: a declared
``Content-Length`` over it is refused at the headers, a chunked body at the chunk that
crosses it, and daphne neither stores nor buffers what follows."""

from __future__ import annotations

import hashlib
import json
import socket
import time

import psutil
import pytest
from rest_framework.authtoken.models import Token

from imports.models import ImportJob
from tests.fixtures.services import Daphne

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 1024 * 1024  # 1 MB: the refused bodies below are many times that


@pytest.fixture(scope="module")
def small_limit_daphne(daphne_env):
    server = Daphne({**daphne_env, "IMPORT_MAX_UPLOAD_BYTES": str(LIMIT)})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def token(operator):
    return Token.objects.create(user=operator).key


def _request_head(port: int, token: str, extra: str) -> bytes:
    return (
        "POST /api/v1/products/import HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Token {token}\r\n"
        "Content-Type: multipart/form-data; boundary=XYZ\r\n"
        f"{extra}\r\n"
    ).encode()


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        part = sock.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_declared_length_over_the_limit_is_refused_at_the_headers(small_limit_daphne, token):
    port = small_limit_daphne.port
    with socket.create_connection(("127.0.0.1", port)) as sock:
        # 10 GB announced, not a byte of it sent: the answer comes anyway
        sock.sendall(_request_head(port, token, "Content-Length: 10737418240\r\n"))
        status, body = _read_response(sock)
    assert status == 413
    assert body["detail"] == "Request body is larger than the 1 MB upload limit."
    assert ImportJob.objects.count() == 0


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_chunked_body_is_refused_as_it_crosses_the_limit(small_limit_daphne, token):
    """No Content-Length at all: the body is counted as it arrives. 200 MB are offered; daphne
    answers 413 after about 1 MB and its memory does not grow with what the client sends."""
    port = small_limit_daphne.port
    proc = psutil.Process(small_limit_daphne.proc.pid)
    rss_before = proc.memory_info().rss
    piece = _chunk(b"x" * 256 * 1024)
    sent = 0
    status = None
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request_head(port, token, "Transfer-Encoding: chunked\r\n"))
        sock.settimeout(0.5)
        deadline = time.monotonic() + 60
        while sent < 200 * 1024 * 1024 and time.monotonic() < deadline:
            try:
                sock.sendall(piece)
                sent += len(piece)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break
        status, body = _read_response(sock)
    assert status == 413
    assert "1 MB upload limit" in body["detail"]
    # refused while arriving: the client was stopped long before it had sent it all
    assert sent < 50 * 1024 * 1024, f"{sent / 1e6:.0f} MB were taken before the 413"
    assert ImportJob.objects.count() == 0
    grown = proc.memory_info().rss - rss_before
    assert grown < 30 * 1024 * 1024, f"daphne grew by {grown / 1e6:.0f} MB"


def test_a_body_under_the_limit_still_goes_through(small_limit_daphne, token):
    import httpx

    content = b"sku,name,price\nA-1,Lamp,9.99\n"
    resp = httpx.post(
        f"{small_limit_daphne.url}/api/v1/products/import",
        headers={"Authorization": f"Token {token}"},
        files={"file": ("p.csv", content, "text/csv")},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    job = ImportJob.objects.get()
    assert job.content_sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize(
    "path", ["/api/v1/realtime/events", "/api/v1/products/import/stream?limit=1"]
)
@pytest.mark.parametrize("selector", ["²", "99999999999999999999999999"])
def test_streams_answer_400_for_a_malformed_organization(small_limit_daphne, token, path, selector):
    import httpx

    for headers, params in (
        ({"X-Organization": selector.encode()}, {}),
        ({}, {"organization": selector}),
    ):
        resp = httpx.get(
            small_limit_daphne.url + path,
            params=params,
            headers={"Authorization": f"Token {token}", **headers},
            timeout=10,
        )
        assert resp.status_code == 400, resp.text
        assert "Organization" in resp.json()["detail"]
