"""A job of any kind under ``/api/v1/jobs/<id>/``: its row errors (list and CSV), cancel and
retry, each kind retrying its own way; another tenant's job is 404, a viewer's change 403."""

from __future__ import annotations

import csv
import io

import pytest

from imports.jobs import run_job
from imports.models import ImportJob, JobStatus, Product
from tests.fixtures.enrichment import components_csv
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)  # a component import's writer threads

BAD_PARTS = [
    ("TI", "LM358D", "", "", "", "active", "", "5", "", "0.20", "", ""),
    ("", "NOMAKER", "", "", "", "", "", "", "", "", "", ""),
    ("X", "=BAD()", "", "", "", "dead", "", "-3", "", "abc", "ZZZ", "1-2"),
]  # fmt: skip


def _component_import(api, rows=BAD_PARTS) -> str:
    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(components_csv(rows), "parts.csv")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    return resp.json()["id"]


def _body(response) -> str:
    return b"".join(response.streaming_content).decode("utf-8-sig")


def test_a_component_import_s_row_errors_are_listed_and_downloadable(api, viewer_api, outsider_api):
    job_id = _component_import(api)
    run_job(job_id)
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.created_rows, job.error_count) == ("completed", 1, 2)

    listed = viewer_api.get(f"/api/v1/jobs/{job_id}/errors").json()
    assert listed["count"] == 2
    assert [e["row"] for e in listed["results"]] == [3, 4]
    assert listed["results"][0]["message"] == "Row 3: manufacturer is required"

    download = viewer_api.get(f"/api/v1/jobs/{job_id}/errors.csv")
    assert download.status_code == 200
    assert download["Content-Disposition"] == 'attachment; filename="parts-errors.csv"'
    rows = list(csv.reader(io.StringIO(_body(download))))
    assert rows[0][:4] == ["row", "error", "Manufacturer", "Manufacturer Part Number"]
    assert [r[0] for r in rows[1:]] == ["3", "4"]
    assert rows[2][3] == "'=BAD()"  # the file's cell, formula-safe
    # the product-import paths stay what they were: product imports only
    assert api.get(f"/api/v1/products/import/{job_id}/errors").status_code == 404
    for path in ("errors", "errors.csv"):
        assert outsider_api.get(f"/api/v1/jobs/{job_id}/{path}").status_code == 404


def test_the_job_page_links_every_kind_s_errors_to_a_download_that_works(
    client, operator, org, api
):
    job_id = _component_import(api)
    run_job(job_id)
    client.force_login(operator)
    page = client.get(f"/jobs/{job_id}/").content.decode()
    link = f"/api/v1/jobs/{job_id}/errors.csv?organization={org.id}"
    assert f'href="{link}"' in page
    download = client.get(link)
    assert download.status_code == 200 and "manufacturer is required" in _body(download)


def test_cancel_and_retry_of_a_component_import_go_on_from_its_file(api, viewer_api):
    job_id = _component_import(api)
    assert viewer_api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 403
    resp = api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    assert viewer_api.post(f"/api/v1/jobs/{job_id}/retry").status_code == 403
    resp = api.post(f"/api/v1/jobs/{job_id}/retry")
    assert resp.status_code == 202, resp.content
    assert resp["Location"] == f"/api/v1/jobs/{job_id}"
    assert (resp.json()["status"], resp.json()["attempt"]) == ("queued", 2)
    run_job(job_id)
    assert ImportJob.objects.get(pk=job_id).created_rows == 1
    again = api.post(f"/api/v1/jobs/{job_id}/retry")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "Only failed or cancelled jobs can be retried; this one is completed."
    )


def test_a_failed_export_is_retried_from_its_filters(api, org, settings):
    settings.EXPORT_STREAM_MAX_ROWS = 0
    Product.objects.create(organization=org, sku="EXP-1", name="One", price="1.50")
    job_id = api.get("/api/v1/products/export").json()["id"]
    ImportJob.objects.filter(pk=job_id).update(status=JobStatus.FAILED, error_message="disk full")
    resp = api.post(f"/api/v1/jobs/{job_id}/retry")
    assert resp.status_code == 202, resp.content
    run_job(job_id)
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.attempt, job.processed_rows) == ("completed", 2, 1)
    assert f"/{job.id}/attempt-2/" in job.file.name  # each attempt writes its own file
    download = api.get(f"/api/v1/products/export/{job_id}/download")
    assert download.status_code == 200 and "EXP-1" in _body(download)


def test_an_unknown_job_is_404_and_a_non_uuid_is_not_routed(api):
    unknown = "00000000-0000-0000-0000-000000000000"
    for method, path in (
        ("get", "errors"),
        ("get", "errors.csv"),
        ("post", "cancel"),
        ("post", "retry"),
    ):
        resp = getattr(api, method)(f"/api/v1/jobs/{unknown}/{path}")
        assert resp.status_code == 404 and resp.json()["detail"] == "No such job.", path
    assert api.post("/api/v1/jobs/nope/cancel").status_code == 404
