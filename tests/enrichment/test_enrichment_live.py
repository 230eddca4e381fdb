"""End to end: API uploads → real rqworker (component import, enrichment) → PostgreSQL → the
BOM's SSE stream on a real daphne, by stream token, and the same topic on the WebSocket."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect as ws_connect

from enrichment.models import BomLine, Component
from imports.models import ImportJob
from realtime.events import bom_topic
from realtime.log import read_after
from tests.fixtures.enrichment import bom_csv, components_csv
from tests.fixtures.files import upload
from tests.realtime.test_streams_live import Reader, _sse_events

pytestmark = pytest.mark.django_db(transaction=True)

COMPONENTS = [
    ("TI", "LM358D", "", "", "SOIC-8", "active", "", "5000", "", "0.20", "USD", "1:0.20;100:0.12"),
    ("ST", "LM358D", "", "", "SOIC-8", "active", "", "3000", "", "0.18", "USD", ""),
    ("Littelfuse", "1.5SMC68CA", "", "", "", "active", "", "800", "", "0.40", "USD", ""),
    ("Littelfuse", "1.5SMC6.8CA", "", "", "", "active", "", "900", "", "0.41", "USD", ""),
    ("Nexperia", "BAS16J", "", "", "", "active", "", "100000", "", "0.02", "USD", ""),
    ("Yageo", "RC0603FR-0710KL", "", "", "", "eol", "", "10", "", "0.001", "USD", ""),
] + [
    ("Acme", f"ACM{i:05d}-X", "", "", "", "active", "", "100", "", "1.00", "USD", "")
    for i in range(200)
]  # fmt: skip


def _bom_rows():
    rows = [
        ("U1", "1", "LM358D", "Texas Instruments", "", ""),
        ("U2", "1", "LM358D", "", "", ""),
        ("D1", "1", "1.5SMC 68CA", "", "", ""),
        ("D2", "3000", "BAS16J,115", "", "", ""),
        ("R1", "100", "RC0603FR-0710KL", "Yageo", "", ""),
        ("J1", "1", "NOT-A-PART", "", "", "DNP"),
        ("X1", "1", "QQQ999ZZZ", "", "", ""),
    ]
    rows += [(f"A{i}", "2", f"acm{i:05d}-x", "", "", "") for i in range(120)]
    return rows


def _headers(user):
    return {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}


def test_bom_enrichment_end_to_end_with_its_live_stream(
    live, api, org, operator, outsider_api, run_worker, settings, monkeypatch
):
    settings.PROGRESS_MIN_INTERVAL = 0
    monkeypatch.setenv("ENRICHMENT_CHUNK_LINES", "20")  # the worker's: several progress events

    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(components_csv(COMPONENTS), "parts.csv")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    run_worker()
    imported = ImportJob.objects.get(pk=resp.json()["id"])
    assert imported.status == "completed", imported.error_message
    assert Component.objects.filter(organization=org).count() == len(COMPONENTS)

    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(_bom_rows()), "board.csv")}, format="multipart"
    )
    bom_id = resp.json()["id"]
    stream = f"{live.url}/api/v1/enrichment/stream/{bom_id}"
    assert outsider_api.get(f"/api/v1/boms/{bom_id}").status_code == 404
    foreign = httpx.get(stream, headers=_headers(_outsider()))
    assert foreign.status_code == 404

    # an integration's client: a short-lived stream token for bom:<id> in the URL
    token = api.post("/api/v1/realtime/tokens", {"topics": [bom_topic(bom_id)]}, format="json")
    assert token.status_code in (200, 201), token.content
    resp = api.post(
        f"/api/v1/boms/{bom_id}/enrichment/start",
        {"organization_id": org.id, "priority": 9},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]

    def ws_events():
        out = []
        with ws_connect(
            f"ws://127.0.0.1:{live.port}/ws/v1/stream/", additional_headers=_headers(operator)
        ) as ws:
            ws.send(json.dumps({"action": "subscribe", "topics": [bom_topic(bom_id)]}))
            while True:
                msg = json.loads(ws.recv(timeout=60))
                if msg["type"] != "heartbeat":
                    out.append(msg)
                if msg["type"] in ("enrichment.completed", "enrichment.failed"):
                    return out

    sse = Reader(_sse_events, stream, {}, params={"token": token.json()["token"]}, timeout=60)
    ws = Reader(ws_events)
    sse.start()
    ws.start()
    time.sleep(1.0)
    run_worker()
    received = sse.join()
    from_ws = ws.join()

    types = [t for t, _, _ in received]
    assert types[0] == "snapshot" and received[0][2]["job"]["id"] == job_id
    assert types[1] == "enrichment.started"
    assert types[-1] == "enrichment.completed"  # and the stream closed after it
    assert types.count("enrichment.progress") >= 3
    percents = [body["state"]["percent_complete"] for t, _, body in received[1:]]
    assert percents == sorted(percents) and percents[-1] == 100
    done = received[-1][2]
    assert done["bom_id"] == bom_id
    assert done["state"] == {
        "percent_complete": 100,
        "total_items": 127,
        "enriched_items": 127,
        "failed_items": 0,
        "matched": 123,  # LM358D by TI, BAS16J,115, RC0603, 120 ACM parts
        "ambiguous": 2,  # LM358D without maker; the 1.5SMC collision
        "not_found": 1,
        "skipped": 1,
    }
    summary = done["summary"]
    assert summary["counts"]["matched"] == 123
    # 0.20 + 3000 x 0.02 + 100 x 0.001 + 120 x 2 x 1.00
    assert summary["total_cost"] == "300.30"
    assert summary["lines_with_warnings"] == 1  # the eol resistor, short of stock too
    assert done["job"]["status"] == "completed"

    logged = [e["id"] for e in read_after(bom_topic(bom_id), None).events]
    assert [i for _, i, _ in received[1:]] == logged  # every event of the run once, in order
    assert [m["type"] for m in from_ws] == types
    assert [m.get("id") for m in from_ws[1:]] == [i for _, i, _ in received[1:]]

    # after the end: a reconnect at the terminal event is 204 (EventSource stops retrying)
    resp = httpx.get(stream, headers={**_headers(operator), "Last-Event-ID": received[-1][1]})
    assert resp.status_code == 204
    # a client cut off mid-run reconnects with the last id it got: every later event once, in
    # order, then the stream closes after the terminal one
    cut = received[3][1]
    again = _sse_events(stream, {**_headers(operator), "Last-Event-ID": cut})
    assert [i for _, i, _ in again] == [i for _, i, _ in received[4:]]
    assert again[-1][0] == "enrichment.completed"

    line = BomLine.objects.get(bom_id=bom_id, mpn="BAS16J,115")
    assert (line.match_status, line.match_tier, str(line.extended_price)) == (
        "matched",
        "packaging",
        "60.000000",
    )
    detail = api.get(f"/api/v1/boms/{bom_id}").json()
    assert detail["state"]["percent_complete"] == 100 and detail["job"]["id"] == job_id

    # the job's own stream: the run's enrichment.completed follows job.completed there, so a
    # client that resumes after job.completed gets it and the stream closes; one that resumes
    # after it is told 204 (before: the first waited for good, the second too)
    job_stream = f"{live.url}/api/v1/jobs/{job_id}/events"
    on_job = read_after(f"job:{job_id}", None).events
    assert [e["type"] for e in on_job][-2:] == ["job.completed", "enrichment.completed"]
    after_end = _sse_events(job_stream, {**_headers(operator), "Last-Event-ID": on_job[-2]["id"]})
    assert [t for t, _, _ in after_end] == ["enrichment.completed"]
    resp = httpx.get(job_stream, headers={**_headers(operator), "Last-Event-ID": on_job[-1]["id"]})
    assert resp.status_code == 204

    # a next run is queued: the BOM page opened now resumes from the last run's end, which
    # is no longer the end (before: 204, and the page waited at "Queued" for good)
    resp = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert resp.status_code == 202, resp.content
    # an operator resolves a line while that run is queued: the worker's run (four
    # connections) keeps the choice instead of writing its exact match over it
    u1 = BomLine.objects.get(bom_id=bom_id, line_number=2)  # LM358D by TI: exact
    st = (
        Component.objects.filter(organization=org, mpn="LM358D")
        .exclude(manufacturer="Texas Instruments")
        .get()
    )
    patched = api.patch(
        f"/api/v1/boms/{bom_id}/lines/{u1.id}", {"component_id": st.id}, format="json"
    )
    assert patched.status_code == 200, patched.content
    resumed = Reader(
        _sse_events, stream, {**_headers(operator), "Last-Event-ID": received[-1][1]}, timeout=60
    )
    resumed.start()
    time.sleep(1.0)
    run_worker()
    next_run = resumed.join()
    assert next_run[0][0] == "enrichment.started"
    assert next_run[-1][0] == "enrichment.completed"
    assert next_run[-1][2]["job"]["id"] == resp.json()["id"]
    u1.refresh_from_db()
    assert (u1.match_tier, u1.component_id) == ("manual", st.id)
    assert next_run[-1][2]["state"]["matched"] == 123  # counted as the operator left it
    # and at its end, a reconnect is 204 again
    resp = httpx.get(stream, headers={**_headers(operator), "Last-Event-ID": next_run[-1][1]})
    assert resp.status_code == 204


def _outsider():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="mallory")
