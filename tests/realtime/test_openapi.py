"""The streams in the OpenAPI schema, where integrators look for them (/api/docs/)."""

from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(api):
    resp = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert resp.status_code == 200
    return resp.json()


def test_the_schema_with_the_streams_still_validates(schema):
    validate_schema(schema)  # raises on anything OpenAPI 3 does not allow


def test_sse_endpoints_are_event_streams_with_their_parameters(schema):
    paths = schema["paths"]
    for path in (
        "/api/v1/jobs/{job_id}/events",
        "/api/v1/realtime/events",
        "/api/v1/products/import/stream",
    ):
        get = paths[path]["get"]
        assert "text/event-stream" in get["responses"]["200"]["content"], path
        assert "realtime" in get["tags"]
        names = {p["name"] for p in get["parameters"]}
        assert "token" in names, path
    feed = {p["name"] for p in paths["/api/v1/realtime/events"]["get"]["parameters"]}
    assert {"topics", "summary", "last_event_id", "Last-Event-ID", "token", "limit"} <= feed
    job = paths["/api/v1/jobs/{job_id}/events"]["get"]
    assert set(job["responses"]) >= {"200", "204", "401", "404", "429"}


def test_the_envelope_event_types_and_the_websocket_protocol_are_described(schema):
    components = schema["components"]["schemas"]
    assert {"id", "type", "topic", "ts", "job"} <= set(components["StreamEvent"]["properties"])
    types = components["StreamEventType"]["enum"]
    assert {"snapshot", "reset", "job.progress", "job.completed", "status", "heartbeat"} <= set(
        types
    )
    assert components["WebSocketClientMessage"]["properties"]["action"]["enum"] == [
        "subscribe",
        "unsubscribe",
    ]
    ws = schema["paths"]["/ws/v1/stream/"]["get"]
    assert "101" in ws["responses"]
    assert "subscribe" in ws["description"] and "4408" in ws["description"]


def test_swagger_ui_serves_the_schema_with_the_streams(api, client):
    assert client.get("/api/docs/").status_code == 200
    assert b"/api/v1/realtime/events" in api.get("/api/schema/").content
