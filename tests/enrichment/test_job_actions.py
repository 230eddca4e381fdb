"""An enrichment run cancelled and run again: over the jobs API, from the job page and the BOM
page; a run that crashes ends its BOM's stream; every run's events reach the organization's
feed; XLSX BOMs and catalogues load as CSV ones do."""

from __future__ import annotations

import io

import openpyxl
import pytest

from enrichment import jobs as enrichment_jobs
from enrichment.models import Bom, BomLine, Component
from imports.jobs import run_job
from imports.models import ImportJob
from realtime.events import bom_topic, org_topic
from realtime.log import read_after
from tests.fixtures.enrichment import COMPONENT_HEADER
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)

BOM_HEADER = ["Designator", "Qty", "Mfr Part #", "Mfr", "Value", "DNP"]
BOM_ROWS = [
    ["U1", 1, "LM358D", "TI", "op amp", ""],
    ["D2", 5000, "BAS16J,115", "Nexperia", "diode", ""],
    ["U3", 1, "NOPE-123", "", "", ""],
    ["J1", 1, "CONN-XYZ", "", "", "DNP"],
]


def xlsx(header, rows) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _bom(api, name="board.xlsx") -> int:
    resp = api.post(
        "/api/v1/boms",
        {"file": upload(xlsx(BOM_HEADER, BOM_ROWS), name), "name": "Board"},
        format="multipart",
    )
    assert resp.status_code == 201, resp.content
    return resp.json()["id"]


def _start(api, bom_id, **body) -> str:
    resp = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", body, format="json")
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def test_an_xlsx_bom_loads_and_enriches_like_a_csv_one(api, catalogue):
    bom_id = _bom(api)
    lines = api.get(f"/api/v1/boms/{bom_id}/lines").json()["results"]
    assert [(r["line_number"], r["mpn"], r["quantity"], r["dnp"]) for r in lines] == [
        (2, "LM358D", 1, False),
        (3, "BAS16J,115", 5000, False),
        (4, "NOPE-123", 1, False),
        (5, "CONN-XYZ", 1, True),
    ]
    run_job(_start(api, bom_id))
    statuses = dict(BomLine.objects.filter(bom_id=bom_id).values_list("mpn", "match_status"))
    assert statuses == {
        "LM358D": "matched",
        "BAS16J,115": "matched",
        "NOPE-123": "not_found",
        "CONN-XYZ": "skipped",
    }


def test_an_xlsx_catalogue_imports_like_a_csv_one(api, org):
    rows = [
        ["TI", "LM358D", "Dual op amp", "Amplifiers", "SOIC-8", "Active", "", 5000, 1, 0.2,
         "USD", "1:0.20;100:0.12"],
        ["Nexperia", "BAS16J", "Diode", "", "", "active", "", 100000, "", "", "", "1:0.02"],
    ]  # fmt: skip
    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(xlsx(COMPONENT_HEADER, rows), "parts.xlsx")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    run_job(resp.json()["id"])
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert (job.status, job.created_rows, job.error_count) == ("completed", 2, 0)
    parts = {c.mpn: c for c in Component.objects.filter(organization=org)}
    assert parts["LM358D"].manufacturer == "Texas Instruments"
    assert (parts["LM358D"].stock, str(parts["LM358D"].unit_price)) == (5000, "0.200000")
    assert str(parts["BAS16J"].unit_price) == "0.020000"  # the smallest quantity's break


def test_a_queued_run_is_cancelled_over_the_jobs_api_and_a_new_one_starts(
    api, viewer_api, outsider_api, catalogue
):
    bom_id = _bom(api)
    job_id = _start(api, bom_id)
    busy = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert busy.status_code == 409
    assert f"cancel it (POST /api/v1/jobs/{job_id}/cancel)" in busy.json()["detail"]
    assert viewer_api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    assert outsider_api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 404
    resp = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    last = read_after(bom_topic(bom_id), None).events[-1]
    assert (last["type"], last["reason"]) == ("enrichment.failed", "cancelled")
    _start(api, bom_id)  # no longer busy


def test_a_cancelled_run_is_retried_as_its_next_attempt(api, catalogue):
    bom_id = _bom(api)
    job_id = _start(api, bom_id)
    api.post(f"/api/v1/jobs/{job_id}/cancel")
    resp = api.post(f"/api/v1/jobs/{job_id}/retry")
    assert resp.status_code == 202, resp.content
    assert resp["Location"] == f"/api/v1/jobs/{job_id}"
    assert (resp.json()["status"], resp.json()["attempt"]) == ("queued", 2)
    busy = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert busy.status_code == 409 and busy.json()["job_id"] == job_id
    run_job(job_id)
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.processed_rows) == ("completed", 4)
    assert not BomLine.objects.filter(bom_id=bom_id, enriched_at=None).exists()
    types = [e["type"] for e in read_after(bom_topic(bom_id), None).events]
    assert types[-1] == "enrichment.completed"


def test_only_the_bom_s_latest_run_is_retried_and_only_while_the_bom_exists(api, catalogue):
    bom_id = _bom(api)
    first = _start(api, bom_id)
    api.post(f"/api/v1/jobs/{first}/cancel")
    second = _start(api, bom_id)
    resp = api.post(f"/api/v1/jobs/{first}/retry")
    assert resp.status_code == 409
    assert resp.json()["detail"] == (
        f"BOM 'Board' has had a newer run since (job {second}): start a new run from the BOM "
        "instead."
    )
    api.post(f"/api/v1/jobs/{second}/cancel")
    Bom.objects.filter(pk=bom_id).delete()
    resp = api.post(f"/api/v1/jobs/{second}/retry")
    assert resp.status_code == 409
    assert resp.json()["detail"] == "The BOM of this run was deleted; upload it again."
    assert ImportJob.objects.get(pk=second).status == "cancelled"


def test_a_run_that_crashes_fails_ends_its_bom_stream_and_is_retried_from_the_job_page(
    api, client, operator, catalogue, monkeypatch
):
    bom_id = _bom(api)
    job_id = _start(api, bom_id)
    real = enrichment_jobs._run

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(enrichment_jobs, "_run", crash)
    run_job(job_id)
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "failed"
    assert "stopped on an internal error (RuntimeError)" in job.error_message
    last = read_after(bom_topic(bom_id), None).events[-1]
    assert (last["type"], last["job"]["status"]) == ("enrichment.failed", "failed")
    assert last["error"] == job.error_message and last["bom_id"] == bom_id

    monkeypatch.setattr(enrichment_jobs, "_run", real)
    client.force_login(operator)
    resp = client.post(f"/jobs/{job_id}/retry", follow=True)
    assert "Queued again as attempt 2." in resp.content.decode()
    run_job(job_id)
    assert ImportJob.objects.get(pk=job_id).status == "completed"


def test_a_run_s_events_reach_the_organization_s_feed(api, org, catalogue):
    bom_id = _bom(api)
    job_id = _start(api, bom_id)
    run_job(job_id)
    mine = [
        e
        for e in read_after(org_topic(org.id), None).events
        if e.get("job", {}).get("id") == job_id
    ]
    types = [e["type"] for e in mine]
    assert types[0] == "job.queued" and types[-1] == "enrichment.completed"
    assert {"job.started", "enrichment.started", "job.completed"} <= set(types)
    completed = next(e for e in mine if e["type"] == "enrichment.completed")
    assert completed["bom_id"] == bom_id and completed["state"]["percent_complete"] == 100


def test_the_bom_page_cancels_its_running_run(client, operator, viewer, api, catalogue):
    bom_id = _bom(api)
    client.force_login(operator)
    page = client.get(f"/boms/{bom_id}/").content.decode()
    assert 'id="cancel-form" hidden' in page  # nothing to cancel
    resp = client.post(f"/boms/{bom_id}/cancel", follow=True)
    assert "No run of this BOM is queued or running." in resp.content.decode()

    job_id = _start(api, bom_id)
    page = client.get(f"/boms/{bom_id}/").content.decode()
    assert 'id="cancel-form">' in page
    client.force_login(viewer)
    resp = client.post(f"/boms/{bom_id}/cancel", {"job": job_id}, follow=True)
    assert "can watch BOMs but not change them" in resp.content.decode()
    assert 'id="cancel-form"' not in resp.content.decode()  # a viewer gets no forms
    assert ImportJob.objects.get(pk=job_id).status == "queued"
    client.force_login(operator)
    page = client.get(f"/boms/{bom_id}/").content.decode()
    assert f'name="job" value="{job_id}"' in page
    # a page that showed another run (ended since) cancels nothing
    stale = client.post(f"/boms/{bom_id}/cancel", {"job": "an-earlier-run"}, follow=True)
    assert "The run this page showed has ended" in stale.content.decode()
    assert ImportJob.objects.get(pk=job_id).status == "queued"
    resp = client.post(f"/boms/{bom_id}/cancel", {"job": job_id}, follow=True)
    page = resp.content.decode()
    assert "Run cancelled." in page and 'id="cancel-form" hidden' in page
    assert ImportJob.objects.get(pk=job_id).status == "cancelled"
