"""Malformed WebSocket input gets an answer and leaves nothing held behind."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect as ws_connect

from realtime.events import job_topic
from realtime.redis import client as redis_client
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)

BAD_FRAMES = [
    b"\x00\x01binary",  # a binary frame
    "not json at all",
    '{"action": "subscribe", "topics": ["job:1"',  # cut short
    json.dumps({"action": "subscribe", "topics": "job:x"}),  # not a list
    json.dumps(["subscribe"]),
]


def _job(api):
    resp = api.post(
        "/api/v1/products/import", {"file": upload(csv_bytes(product_rows(5)))}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def _auth(user):
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def _answer(ws):
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] != "heartbeat":
            return message


def test_25_bad_frames_in_a_row_do_not_lock_the_user_out(live, api, operator):
    job_id = _job(api)
    url = f"ws://127.0.0.1:{live.port}/ws/v1/stream/"
    for n in range(25):  # the tests allow 4 streams per user
        with ws_connect(url, additional_headers=_auth(operator)) as ws:
            ws.send(BAD_FRAMES[n % len(BAD_FRAMES)])
            answer = _answer(ws)
            assert answer["type"] == "error", (n, answer)
            assert answer["detail"]
    deadline = time.monotonic() + 5
    key = f"intake:streams:user:{operator.pk}"
    while redis_client().zcard(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client().zcard(key) == 0  # every slot was given back
    with httpx.stream(
        "GET", f"{live.url}/api/v1/jobs/{job_id}/events", headers=_auth(operator), timeout=10
    ) as resp:
        assert resp.status_code == 200  # no 429


def test_a_stream_answers_each_bad_frame_and_goes_on(live, api, operator):
    job_id = _job(api)
    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/", additional_headers=_auth(operator)
    ) as ws:
        for n in range(25):
            ws.send(BAD_FRAMES[n % len(BAD_FRAMES)])
            assert _answer(ws)["type"] == "error"
        bad_cursor = {"action": "subscribe", "topics": [job_topic(job_id)], "last_event_id": [1]}
        ws.send(json.dumps(bad_cursor))
        answer = _answer(ws)
        assert answer["type"] == "error" and "last_event_id" in answer["detail"]
        ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(job_id)]}))
        answer = _answer(ws)
    assert answer["type"] == "snapshot" and answer["job"]["id"] == job_id
