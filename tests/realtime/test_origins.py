"""WebSocket clients that are not browsers (no ``Origin``), and browsers on other sites."""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from realtime.access import issue_stream_token
from realtime.events import job_topic
from realtime.origins import origin_allowed
from tests.fixtures.files import csv_bytes, product_rows, upload

CORS_ORIGIN = "http://app.example.test:3000"


def scope(origin=None, host="intake.test:8000", **extra):
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "headers": headers, **extra}


@pytest.fixture
def origin_settings(settings):
    settings.ALLOWED_HOSTS = ["intake.test", ".example.org"]
    settings.CORS_ALLOWED_ORIGINS = [CORS_ORIGIN]
    return settings


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "intake.test:8000", True),  # a program: it must authenticate with a token
        ("http://intake.test:8000", "intake.test:8000", True),  # the site itself
        ("https://intake.test", "intake.test", True),  # behind a TLS proxy, default port
        ("http://intake.test:8001", "intake.test:8000", False),  # another port of the host
        ("http://evil.test:8000", "intake.test:8000", False),
        ("http://evil.test:8000", "evil.test:8000", False),  # Host not in ALLOWED_HOSTS
        ("http://a.example.org", "a.example.org", True),
        (CORS_ORIGIN, "intake.test:8000", True),
        ("https://app.example.test:3000", "intake.test:8000", False),  # the scheme counts
        ("http://app.example.test:3001", "intake.test:8000", False),  # and the port
        ("http://app.example.test", "intake.test:8000", False),
        ("null", "intake.test:8000", False),  # sandboxed frames, file: pages
        ("intake.test:8000", "intake.test:8000", False),
    ],
)
def test_origin_rules(origin_settings, origin, host, allowed):
    assert origin_allowed(scope(origin, host)) is allowed


def test_the_connections_scheme_counts_when_the_server_gives_it(origin_settings):
    assert origin_allowed(scope("https://intake.test", "intake.test", scheme="wss"))
    assert not origin_allowed(scope("http://intake.test", "intake.test", scheme="wss"))


# ----------------------------------------------------------------------- a real daphne


@pytest.fixture(scope="module")
def cors_daphne(daphne_env):
    from tests.fixtures.services import Daphne

    server = Daphne({**daphne_env, "CORS_ALLOWED_ORIGINS": CORS_ORIGIN})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def job_id(api, cors_daphne, transactional_db):
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(csv_bytes(product_rows(5)))},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def _first_event(url, job_id, **kwargs):
    with ws_connect(url, open_timeout=10, **kwargs) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(job_id)]}))
        return json.loads(ws.recv(timeout=10))


def test_no_origin_and_an_api_token_header(cors_daphne, job_id, operator):
    token = Token.objects.get_or_create(user=operator)[0].key
    first = _first_event(
        f"ws://127.0.0.1:{cors_daphne.port}/ws/v1/stream/",
        job_id,
        additional_headers={"Authorization": f"Token {token}"},
    )
    assert first["type"] == "snapshot" and first["job"]["id"] == job_id


def test_no_origin_and_a_stream_token_in_the_url(cors_daphne, job_id, operator, org):
    token, _ = issue_stream_token(
        user_id=operator.pk, organization_id=org.id, topics=[job_topic(job_id)]
    )
    first = _first_event(f"ws://127.0.0.1:{cors_daphne.port}/ws/v1/stream/?token={token}", job_id)
    assert first["type"] == "snapshot" and first["job"]["id"] == job_id


def test_no_origin_and_no_credentials_is_still_refused(cors_daphne, job_id):
    url = f"ws://127.0.0.1:{cors_daphne.port}/ws/v1/stream/"
    with ws_connect(url) as ws, pytest.raises(Exception) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1008  # not authenticated


def test_a_foreign_origin_riding_a_session_cookie_is_refused(cors_daphne, job_id, operator, client):
    client.force_login(operator)
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    url = f"ws://127.0.0.1:{cors_daphne.port}/ws/v1/stream/"
    with pytest.raises(InvalidStatus) as refused:
        _first_event(url, job_id, additional_headers=cookie, origin="http://evil.test")
    assert refused.value.response.status_code == 403
    # the same cookie from the site itself is fine
    own = _first_event(
        url, job_id, additional_headers=cookie, origin=f"http://127.0.0.1:{cors_daphne.port}"
    )
    assert own["type"] == "snapshot"


def test_an_allowed_cors_origin_is_accepted_and_only_with_its_port(cors_daphne, job_id, operator):
    token = Token.objects.get_or_create(user=operator)[0].key
    url = f"ws://127.0.0.1:{cors_daphne.port}/ws/v1/stream/"
    headers = {"Authorization": f"Token {token}"}
    first = _first_event(url, job_id, additional_headers=headers, origin=CORS_ORIGIN)
    assert first["type"] == "snapshot"
    with pytest.raises(InvalidStatus) as refused:
        _first_event(url, job_id, additional_headers=headers, origin="http://app.example.test:3001")
    assert refused.value.response.status_code == 403
