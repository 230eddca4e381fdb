"""Fixing failed rows: corrected rows become a new job linked to the original."""

from __future__ import annotations

from pathlib import Path

import pytest

from imports.fixes import fixed_rows
from imports.models import ImportJob, Product
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)

EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"


def _failed_job(api, run_worker):
    rows = list(product_rows(5))
    rows[1][3] = "abc"  # row 3
    rows[3][9] = "retired"  # row 5
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(csv_bytes(rows)), "mode": "upsert"},
        format="multipart",
    )
    run_worker()
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.failed_rows == 2
    return job, rows


def test_fixed_rows_are_imported_as_a_new_job_linked_to_the_original(api, org, run_worker):
    job, rows = _failed_job(api, run_worker)
    stored = {e.row_number: e.values for e in job.row_errors.all()}
    assert stored[3] == rows[1]  # the original cells are kept
    fixed_3 = [*rows[1][:3], "12.00", *rows[1][4:]]
    resp = api.post(
        f"/api/v1/products/import/{job.id}/fix",
        {"rows": [{"row": 3, "values": fixed_3}, {"row": 5, "values": {"status": "draft"}}]},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert body["fixes"] == str(job.id) and body["original_filename"] == "products-fixes.csv"
    run_worker()
    fix_job = ImportJob.objects.get(pk=body["id"])
    # row 5 was sent with only its status: sku, name and price are now missing
    assert (fix_job.created_rows, fix_job.failed_rows) == (1, 1)
    assert Product.objects.get(organization=org, sku="SKU-000002").price == 12
    assert fixed_rows(job) == {3}


def test_fix_refuses_rows_that_did_not_fail_and_other_tenants(
    api, outsider_api, viewer_api, run_worker
):
    job, rows = _failed_job(api, run_worker)
    url = f"/api/v1/products/import/{job.id}/fix"
    resp = api.post(url, {"rows": [{"row": 2, "values": rows[0]}]}, format="json")
    assert resp.status_code == 400 and "did not fail in this job" in resp.json()["detail"]
    resp = api.post(url, {"rows": [{"row": 3, "values": {"colour": "red"}}]}, format="json")
    assert resp.status_code == 400 and "column 'colour' is not in the file" in resp.json()["detail"]
    resp = api.post(url, {"rows": []}, format="json")
    assert resp.status_code == 400
    assert (
        outsider_api.post(url, {"rows": [{"row": 3, "values": rows[1]}]}, format="json").status_code
        == 404
    )
    assert (
        viewer_api.post(url, {"rows": [{"row": 3, "values": rows[1]}]}, format="json").status_code
        == 403
    )


def test_a_fixed_shopify_row_imports_with_the_preset_and_its_carried_title(api, org, run_worker):
    text = (EXPORTS / "shopify_products_export.csv").read_text()
    assert text.count(",26.00,") == 1
    text = text.replace(",26.00,", ",twenty-six,")
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(text.encode(), "products_export.csv")},
        format="multipart",
    )
    run_worker()
    job = ImportJob.objects.get(pk=resp.json()["id"])
    [error] = job.row_errors.all()
    header = job.options["columns"]
    values = list(error.values)
    values[header.index("Variant Price")] = "26.00"
    resp = api.post(
        f"/api/v1/products/import/{job.id}/fix",
        {"rows": [{"row": error.row_number, "values": values}]},
        format="json",
    )
    assert resp.status_code == 202, resp.content
    run_worker()
    tee = Product.objects.get(organization=org, sku="NW-TEE-WHT-L")
    assert tee.name == "Classic Tee - White / L" and str(tee.price) == "26.00"
    assert fixed_rows(job) == {error.row_number}
