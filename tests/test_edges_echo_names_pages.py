"""Edges an adversarial read of the API found: a value UTF-8 cannot hold echoed in an error,
an upload's name too long for the file system in bytes, and the page size on every list."""

from __future__ import annotations

import json

import pytest

from enrichment.models import Bom, Project
from imports.models import ImportJob
from imports.purchasing.models import PurchaseOrder
from imports.uploads import NAME_MAX_BYTES
from tests.fixtures.enrichment import bom_csv, components_csv
from tests.fixtures.files import csv_bytes, product_rows, upload
from tests.purchasing.documents import po_csv

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = [("R1", "2", "RC0603FR-0710KL", "Yageo", "10k", "")]


def _bom(api, **fields):
    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(ROWS), "board.csv"), **fields}, format="multipart"
    )
    assert resp.status_code == 201, resp.content
    return resp.json()["id"]


@pytest.mark.parametrize("field", ["only", "project_id"])
def test_a_lone_surrogate_in_the_start_body_is_a_400_that_names_the_field(api, org, field):
    """``json.loads`` takes ``"\\ud800"``; the message echoing it could not be encoded as
    UTF-8 and the answer was a 500 after the exception handler had run."""
    bom_id = _bom(api)
    resp = api.generic(
        "POST",
        f"/api/v1/boms/{bom_id}/enrichment/start",
        '{"' + field + '": "\\ud800"}',
        content_type="application/json",
    )
    assert resp.status_code == 400, resp.content
    body = json.loads(resp.content)  # valid JSON: the surrogate escaped
    message = body[field][0] if field in body else body["detail"]
    assert field in message and "\ud800" in message
    assert not ImportJob.objects.filter(kind="bom_enrichment").exists()


LONG = "é" * 196  # 196 characters, 392 bytes of UTF-8: more than a file name can hold


def _name_fits(name: str, suffix: str) -> None:
    assert len(name.encode()) <= NAME_MAX_BYTES and name.endswith(suffix)
    assert name.startswith("é" * 50)


def test_a_bom_and_a_component_file_with_a_long_non_ascii_name_are_stored(api, org):
    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(ROWS), LONG + ".csv")}, format="multipart"
    )
    assert resp.status_code == 201, resp.content
    bom = Bom.objects.get(pk=resp.json()["id"])
    _name_fits(bom.original_filename, ".csv")
    assert bom.source_file.storage.exists(bom.source_file.name)
    parts = [("Nexperia", "BAS16J", "", "", "", "active", "", "5", "1", "0.02", "USD", "")]
    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(components_csv(parts), LONG + ".csv")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    job = ImportJob.objects.get(pk=resp.json()["id"])
    _name_fits(job.original_filename, ".csv")
    assert job.file.storage.exists(job.file.name)


def test_a_product_file_and_an_order_with_a_long_non_ascii_name_are_stored(api, org):
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(csv_bytes(product_rows(3)), LONG + ".csv")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    _name_fits(ImportJob.objects.get(pk=resp.json()["id"]).original_filename, ".csv")
    resp = api.post(
        "/api/v1/purchase-orders", {"file": upload(po_csv(2), LONG + ".csv")}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    order = PurchaseOrder.objects.get(pk=resp.json()["purchase_order"]["id"])
    _name_fits(order.original_filename, ".csv")


def test_enrichment_and_order_lists_take_page_size_and_say_their_limit(api, org):
    for i in range(3):
        Project.objects.create(organization=org, name=f"P{i}")
    bom_id = _bom(api)
    for path in (
        "/api/v1/boms",
        f"/api/v1/boms/{bom_id}/lines",
        "/api/v1/components",
        "/api/v1/projects",
        "/api/v1/purchase-orders",
    ):
        resp = api.get(path, {"page_size": 2})
        assert resp.status_code == 200, (path, resp.content)
        assert resp.json()["limit"] == 2, path
    projects = api.get("/api/v1/projects", {"page_size": 2}).json()
    assert len(projects["results"]) == 2 and projects["count"] == 3 and projects["next"]
    # clamped, not refused; an offset past bigint is no 500
    assert api.get("/api/v1/boms", {"limit": 10**9}).json()["limit"] == 500
    assert api.get("/api/v1/purchase-orders", {"limit": 10**9}).json()["limit"] == 200
    resp = api.get(f"/api/v1/boms/{bom_id}/lines", {"offset": "9" * 19})
    assert resp.status_code == 200 and resp.json()["results"] == []
    for path in ("/api/v1/components", "/api/v1/purchase-orders"):
        assert api.get(path, {"offset": "9" * 30}).status_code == 200
