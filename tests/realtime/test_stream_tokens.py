"""Stream tokens: accepted wherever a stream is read, and never beyond their topics."""

from __future__ import annotations

import json

import httpx
import pytest
from httpx_sse import connect_sse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from websockets.sync.client import connect as ws_connect

from realtime.access import MAX_TOPICS
from realtime.events import job_topic, org_topic
from realtime.publish import publish_now
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _upload(api):
    resp = api.post(
        "/api/v1/products/import", {"file": upload(csv_bytes(product_rows(5)))}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def _token(api, *topics):
    resp = api.post("/api/v1/realtime/tokens", {"topics": list(topics)}, format="json")
    assert resp.status_code == 201, resp.content
    return resp.json()["token"]


def _first_sse_event(url, params):
    with (
        httpx.Client(timeout=10) as http,
        connect_sse(http, "GET", url, params=params) as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            if sse.data and sse.event != "heartbeat":
                return sse.event, json.loads(sse.data)
    raise AssertionError("the stream ended without an event")


def test_polling_takes_a_stream_token_within_its_topics(api, operator, org):
    job_id = _upload(api)
    other_id = _upload(api)
    publish_now("job.stage", topics=[job_topic(job_id)], body={"job": {"id": job_id}})
    token = _token(api, job_topic(job_id))
    anonymous = APIClient()  # an EventSource client falling back to polling: no headers

    resp = anonymous.get("/api/v1/realtime/poll", {"topic": job_topic(job_id), "token": token})
    assert resp.status_code == 200, resp.content
    assert [e["type"] for e in resp.json()["events"]] == ["job.queued", "job.stage"]
    for outside in (job_topic(other_id), org_topic(org.id)):
        resp = anonymous.get("/api/v1/realtime/poll", {"topic": outside, "token": token})
        assert resp.status_code == 404, outside

    resp = anonymous.get("/api/v1/realtime/poll", {"topic": job_topic(job_id), "token": "x.y.z"})
    assert resp.status_code == 401 and "not valid" in resp.json()["detail"]
    api_token = Token.objects.get(user=operator).key
    resp = anonymous.get("/api/v1/realtime/poll", {"topic": job_topic(job_id), "token": api_token})
    assert resp.status_code == 401 and "not accepted in URLs" in resp.json()["detail"]
    # a stream token mints no further tokens
    resp = anonymous.post(
        f"/api/v1/realtime/tokens?token={token}", {"topics": [job_topic(job_id)]}, format="json"
    )
    assert resp.status_code == 401


def test_a_job_token_opens_neither_the_summary_nor_the_organizations_feed(live, api, org):
    job_id = _upload(api)
    token = _token(api, job_topic(job_id))
    for path, params in (
        ("/api/v1/products/import/stream", {}),
        ("/api/v1/realtime/events", {}),
        ("/api/v1/realtime/events", {"summary": "1"}),
        ("/api/v1/realtime/events", {"topics": job_topic(job_id), "summary": "1"}),
    ):
        resp = httpx.get(f"{live.url}{path}", params={**params, "token": token}, timeout=10)
        assert resp.status_code == 403, (path, params, resp.text)
        assert f"org:{org.id}" in resp.json()["detail"]  # says which topic it would need
    # narrowed to the token's own job, the feed is what the token covers
    event, body = _first_sse_event(
        f"{live.url}/api/v1/realtime/events",
        {"topics": job_topic(job_id), "token": token, "last_event_id": "1-0"},
    )
    assert event == "reset"
    # a token for the organization's topic opens both
    org_token = _token(api, org_topic(org.id))
    summary_url = f"{live.url}/api/v1/products/import/stream"
    event, body = _first_sse_event(summary_url, {"token": org_token})
    assert event == "status" and body["total_jobs"] == 1


def test_viewers_get_tokens_for_what_they_may_read(live, api, viewer_api, outsider_api):
    job_id = _upload(api)
    wanted = {"topics": [job_topic(job_id)]}
    resp = viewer_api.post("/api/v1/realtime/tokens", wanted, format="json")
    assert resp.status_code == 201, resp.content
    event, body = _first_sse_event(
        f"{live.url}/api/v1/jobs/{job_id}/events", {"token": resp.json()["token"]}
    )
    assert event == "snapshot" and body["job"]["id"] == job_id
    # another tenant's job: 404, as if it did not exist
    resp = outsider_api.post(
        "/api/v1/realtime/tokens", {"topics": [job_topic(job_id)]}, format="json"
    )
    assert resp.status_code == 404


def test_at_most_100_topics_per_token_and_per_subscription(live, api, operator, org):
    job_id = _upload(api)
    too_many = [job_topic(job_id)] + [f"job:00000000-0000-0000-0000-{n:012d}" for n in range(100)]
    resp = api.post("/api/v1/realtime/tokens", {"topics": too_many}, format="json")
    assert resp.status_code == 400
    assert f"At most {MAX_TOPICS} topics" in json.dumps(resp.json())

    key = Token.objects.get(user=operator).key
    resp = httpx.get(
        f"{live.url}/api/v1/realtime/events",
        params={"topics": ",".join(too_many)},
        headers={"Authorization": f"Token {key}"},
    )
    assert resp.status_code == 400 and f"At most {MAX_TOPICS} topics" in resp.json()["detail"]

    with ws_connect(
        f"ws://127.0.0.1:{live.port}/ws/v1/stream/",
        additional_headers={"Authorization": f"Token {key}"},
    ) as ws:
        ws.send(json.dumps({"action": "subscribe", "topics": too_many}))
        answer = json.loads(ws.recv(timeout=10))
        assert answer["type"] == "error" and f"At most {MAX_TOPICS} topics" in answer["detail"]
        # the connection is still good for a subscription within the limit
        ws.send(json.dumps({"action": "subscribe", "topics": [job_topic(job_id)]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"


def test_the_feed_names_where_to_follow_a_topic_it_cannot_narrow_to(live, api, operator, org):
    """``topics=`` narrows the organization feed to jobs; another registered kind's topic gets a
    400 that says where that topic is streamed (before any lookup: nothing about whether it
    exists), and a malformed or unknown one stays a 404."""
    key = Token.objects.get_or_create(user=operator)[0].key
    headers = {"Authorization": f"Token {key}"}
    feed = f"{live.url}/api/v1/realtime/events"
    resp = httpx.get(feed, params={"topics": "org:1"}, headers=headers)
    assert resp.status_code == 400, resp.content
    assert "/api/v1/realtime/topics/org:1/events" in resp.json()["detail"]
    for unknown in ("nosuchkind:1", "job:"):
        resp = httpx.get(feed, params={"topics": unknown}, headers=headers)
        assert resp.status_code == 404, (unknown, resp.content)
