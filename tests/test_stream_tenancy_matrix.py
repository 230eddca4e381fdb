"""The stream routes through a real daphne: another tenant's BOM, job or organization is a 404
(the same as one that does not exist), anonymous is a 401, and stream tokens, polling and the
WebSocket subscription answer bad input with a 4xx or an error message naming it."""

from __future__ import annotations

import json

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from enrichment.models import Bom
from imports.models import ImportJob, JobKind, JobStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(live, org, other_org, operator, outsider):
    bom = Bom.objects.create(organization=org, name="Main board", line_count=0)
    job = ImportJob.objects.create(
        organization=org, kind=JobKind.PRODUCT_IMPORT, status=JobStatus.COMPLETED
    )
    return {
        "url": live.url,
        "port": live.port,
        "bom": bom.id,
        "job": str(job.id),
        "org": org.id,
        "mine": {"Authorization": f"Token {Token.objects.create(user=operator).key}"},
        "theirs": {"Authorization": f"Token {Token.objects.create(user=outsider).key}"},
    }


def get(world, path, headers=None, **params):
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", world["url"] + path, headers=headers or {}, params=params) as resp,
    ):
        if resp.status_code == 200:
            # a stream: read until its first frame with data, then hang up
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    return resp.status_code, line[5:]
            return resp.status_code, ""
        return resp.status_code, resp.read().decode()


STREAMS = [
    "/api/v1/enrichment/stream/{bom}",
    "/api/v1/realtime/topics/bom:{bom}/events",
    "/api/v1/realtime/topics/job:{job}/events",
    "/api/v1/realtime/topics/org:{org}/events",
    "/api/v1/jobs/{job}/events",
]


def test_every_stream_is_a_404_to_another_tenant_and_a_401_to_nobody(world):
    for template in STREAMS:
        path = template.format(**world)
        code, body = get(world, path, world["mine"])
        assert code == 200, (path, body)
        code, body = get(world, path, world["theirs"])
        assert code == 404, (path, code, body)
        assert "Main board" not in body
        code, body = get(world, path)
        assert code == 401, (path, code, body)


def test_a_foreign_stream_answers_exactly_like_a_missing_one(world):
    missing = {"bom": 999_999_999, "job": "00000000-0000-0000-0000-000000000000", "org": 999_999}
    for template in STREAMS:
        foreign = get(world, template.format(**world), world["theirs"])
        absent = get(world, template.format(**missing), world["theirs"])
        assert foreign == absent, template


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/enrichment/stream/999999999999999999",
        "/api/v1/enrichment/stream/9999999999999999999999",
        "/api/v1/enrichment/stream/²",
        "/api/v1/enrichment/stream/x",
        "/api/v1/realtime/topics/bom:999999999999999999999999/events",
        "/api/v1/realtime/topics/bom:x/events",
        "/api/v1/realtime/topics/job:not-a-uuid/events",
        "/api/v1/realtime/topics/org:99999999999999999999999/events",
        "/api/v1/realtime/topics/nosuch:1/events",
        "/api/v1/jobs/00000000-0000-0000-0000-00000000000g/events",
    ],
)
def test_malformed_stream_ids_are_404(world, path):
    code, body = get(world, path, world["mine"])
    assert code == 404, (code, body[:200])


@pytest.mark.parametrize(
    "params",
    [
        {"last_event_id": "x"},
        {"last_event_id": "9" * 5000},
        {"last_event_id": "²-0"},
        {"token": "x.y.z"},
    ],
)
def test_bad_stream_parameters_are_a_4xx_or_a_reset(world, params):
    code, body = get(
        world, "/api/v1/enrichment/stream/{bom}".format(**world), world["mine"], **params
    )
    assert code in (200, 400, 401), (code, body[:200])


def _api(world, method, path, who="mine", **kwargs):
    return httpx.request(method, world["url"] + path, headers=world[who], timeout=10, **kwargs)


def test_stream_tokens_and_polling_keep_to_the_callers_tenant(world):
    bom_topic = f"bom:{world['bom']}"
    resp = _api(world, "POST", "/api/v1/realtime/tokens", "theirs", json={"topics": [bom_topic]})
    assert resp.status_code == 404
    resp = _api(world, "GET", "/api/v1/realtime/poll", "theirs", params={"topic": bom_topic})
    assert resp.status_code == 404
    resp = _api(world, "POST", "/api/v1/realtime/tokens", json={"topics": [bom_topic]})
    assert resp.status_code == 201
    token = resp.json()["token"]
    # the owner's token opens the owner's stream for anyone holding it, and nothing else
    code, _ = get(world, f"/api/v1/enrichment/stream/{world['bom']}", token=token)
    assert code == 200
    code, _ = get(world, f"/api/v1/jobs/{world['job']}/events", token=token)
    assert code in (403, 404)


@pytest.mark.parametrize(
    "body",
    [
        {"topics": "bom:1"},
        {"topics": [1, 2]},
        {"topics": [None]},
        {"topics": [{"a": 1}]},
        {"topics": ["nonsense"]},
        {"topics": []},
        {"topics": ["bom:" + "9" * 5000]},
        {"topics": ["bom:1"], "ttl": "forever"},
        {"topics": ["bom:1"], "ttl": 10**12},
        [],
        "x",
    ],
)
def test_bad_token_requests_are_4xx(world, body):
    resp = _api(world, "POST", "/api/v1/realtime/tokens", json=body)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:200])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"topic": "bom:x"},
        {"topic": "bom:" + "9" * 5000},
        {"topic": "bom:²"},
        {"topic": "bom:{bom}", "after": "x"},
        {"topic": "bom:{bom}", "after": "9" * 5000 + "-0"},
        {"topic": "bom:{bom}", "limit": "x"},
        {"topic": "bom:{bom}", "limit": "9" * 30},
        {"topic": "bom:{bom}", "limit": "-1"},
    ],
)
def test_bad_polls_are_4xx(world, params):
    params = {k: v.format(**world) for k, v in params.items()}
    resp = _api(world, "GET", "/api/v1/realtime/poll", params=params)
    assert resp.status_code < 500, (resp.status_code, resp.text[:200])
    if resp.status_code == 200:
        assert len(resp.json()["events"]) <= 1000


def test_a_websocket_subscription_to_a_foreign_bom_is_closed_as_not_found(world):
    url = f"ws://127.0.0.1:{world['port']}/ws/v1/stream/"
    for bom_id in (world["bom"], 999_999_999):  # foreign, then missing: the same answer
        with ws_connect(url, additional_headers=world["theirs"], open_timeout=10) as ws:
            ws.send(json.dumps({"action": "subscribe", "topics": [f"bom:{bom_id}"]}))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd.code == 4404
    with ws_connect(url, additional_headers=world["mine"], open_timeout=10) as ws:
        # a frame that is not an object is answered, and the socket stays usable
        ws.send(json.dumps([1, 2]))
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        ws.send(json.dumps({"action": "subscribe", "topics": [f"bom:{world['bom']}"]}))
        assert json.loads(ws.recv(timeout=10))["type"] != "error"


def test_a_websocket_frame_nested_too_deep_is_answered_and_frees_nothing(world):
    url = f"ws://127.0.0.1:{world['port']}/ws/v1/stream/"
    for _ in range(6):  # more than REALTIME_MAX_STREAMS_PER_USER (4 here): slots must be freed
        with ws_connect(url, additional_headers=world["mine"], open_timeout=10) as ws:
            ws.send("[" * 100_000)
            reply = json.loads(ws.recv(timeout=10))
            assert reply["type"] == "error", reply
            ws.send(json.dumps({"action": "subscribe", "topics": [f"bom:{world['bom']}"]}))
            assert json.loads(ws.recv(timeout=10))["type"] != "error"
