"""Product files and requests an adversarial read found breaking imports: a 500, or a whole
job failed over one cell, where a row error or a 4xx belongs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from imports import jobs
from imports.models import ImportJob, JobKind, JobStatus, Product
from imports.pipeline.markup import html_to_text
from imports.pipeline.validation import RowError
from tests.fixtures.files import csv_bytes, product_rows, upload
from tests.imports.test_fix_rows import _failed_job

pytestmark = pytest.mark.django_db(transaction=True)

EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"
ODD_HTML = "<p>Soft</p><![foo[bar]]> cotton"  # html.parser asserts on the marked section


def _shopify_with_odd_body() -> bytes:
    rows = list(csv.reader(io.StringIO((EXPORTS / "shopify_products_export.csv").read_text())))
    rows[1][2] = ODD_HTML
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def test_markup_the_html_parser_refuses_keeps_its_text():
    assert "cotton" in html_to_text(ODD_HTML)


def test_a_shopify_body_the_parser_refuses_previews_and_imports(api, org):
    content = _shopify_with_odd_body()
    resp = api.post(
        "/api/v1/products/import/preview",
        {"file": upload(content, "products_export.csv")},
        format="multipart",
    )
    assert resp.status_code == 200, resp.content
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(content, "products_export.csv")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    jobs.run_job(resp.json()["id"])
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert Product.objects.filter(organization=org).count() == job.created_rows > 0


def test_a_utf16_header_with_a_nul_is_a_400(api, org):
    content = "sku,name,price,no\x00te\nA-1,Widget,1.00,x\n".encode("utf-16")
    resp = api.post(
        "/api/v1/products/import", {"file": upload(content, "p.csv")}, format="multipart"
    )
    assert resp.status_code == 400, resp.content
    assert "NUL" in resp.json()["detail"]
    assert not ImportJob.objects.exists()


def test_a_nul_in_a_row_past_the_sniffed_head_is_a_row_error(api, org):
    rows = list(product_rows(1200))  # ~100 kB: past the reader's 64 KiB NUL check
    rows[1100][0] = "AB\x00C"
    rows[1101][1] = "Wid\x00get"
    resp = api.post(
        "/api/v1/products/import", {"file": upload(csv_bytes(rows), "p.csv")}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    jobs.run_job(resp.json()["id"])
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.created_rows + job.failed_rows == 1200 and job.failed_rows >= 1
    for error in job.row_errors.all():
        assert "\x00" not in error.message and not any("\x00" in v for v in error.values)


def test_row_errors_hold_only_text_the_database_takes():
    error = RowError(7, "Row 7: sku 'A\x00B' \ud800", ["A\x00B", "\udfff"])
    assert error.message == "Row 7: sku 'AB' \ufffd" and error.values == ["AB", "\ufffd"]


def test_a_fix_with_a_lone_surrogate_is_a_400(api, org, run_worker):
    job, _ = _failed_job(api, run_worker)  # rows 3 and 5 failed
    for bad in ("\\ud800", "\\u0000"):
        body = '{"rows": [{"row": 3, "values": {"price": "1.00", "name": "' + bad + '"}}]}'
        resp = api.generic(
            "POST", f"/api/v1/products/import/{job.id}/fix", body, content_type="application/json"
        )
        assert resp.status_code == 400, resp.content
        assert "NUL character or a lone surrogate" in resp.json()["detail"]
    assert ImportJob.objects.count() == 1  # no fix job


def test_the_mapping_page_is_for_product_imports_only(client, operator, org):
    job = ImportJob.objects.create(
        organization=org, kind=JobKind.PURCHASE_ORDER, status=JobStatus.PENDING,
        original_filename="order.pdf",
    )  # fmt: skip
    client.force_login(operator)
    assert client.get(f"/jobs/{job.id}/mapping/").status_code == 404


@pytest.mark.parametrize("mode", ["upsert", "update"])
def test_a_file_with_fewer_columns_leaves_the_others_as_they_are(api, org, mode):
    """A price file (sku, name, price) wrote every other field's default over existing
    products: description, barcode, category and brand emptied, quantity 0, currency USD."""
    Product.objects.create(
        organization=org, sku="K-1", name="Kettle", description="Keep me", price="10.00",
        currency="EUR", quantity=7, barcode="4006381333931", category="Kitchen",
        brand="Acme", status="draft",
    )  # fmt: skip
    rows = [["K-1", "Kettle", "12.50"], ["K-1-NEW", "Lid", "2.00"]]
    content = csv_bytes(rows if mode == "upsert" else rows[:1], header=["sku", "name", "price"])
    resp = api.post(
        "/api/v1/products/import", {"file": upload(content), "mode": mode}, format="multipart"
    )
    assert resp.status_code == 202, resp.content
    jobs.run_job(resp.json()["id"])
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == JobStatus.COMPLETED and job.updated_rows == 1, job.error_message
    kept = Product.objects.get(organization=org, sku="K-1")
    assert str(kept.price) == "12.50"
    assert (kept.description, kept.currency, kept.quantity, kept.barcode) == (
        "Keep me", "EUR", 7, "4006381333931",
    )  # fmt: skip
    assert (kept.category, kept.brand, kept.status) == ("Kitchen", "Acme", "draft")
    # the same file again changes nothing
    resp = api.post(
        "/api/v1/products/import", {"file": upload(content), "mode": mode}, format="multipart"
    )
    jobs.run_job(resp.json()["id"])
    again = ImportJob.objects.get(pk=resp.json()["id"])
    assert again.updated_rows == 0 and again.unchanged_rows == len(content.splitlines()) - 1


def test_the_preview_of_a_price_file_compares_only_its_columns(api, org):
    Product.objects.create(
        organization=org, sku="K-1", name="Kettle", description="Keep me", price="10.00",
        currency="EUR", quantity=7, category="Kitchen",
    )  # fmt: skip
    Product.objects.create(organization=org, sku="K-2", name="Lid", price="2.00", brand="Acme")
    content = csv_bytes(
        [["K-1", "Kettle", "10.00"], ["K-2", "Lid", "2.50"]], header=["sku", "name", "price"]
    )
    resp = api.post(
        "/api/v1/products/import/preview", {"file": upload(content)}, format="multipart"
    )
    assert resp.status_code == 200, resp.content
    assert [r["outcome"] for r in resp.json()["rows"]] == ["unchanged", "update"]
