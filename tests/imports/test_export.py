"""Export: streamed CSV/XLSX, formula-safe, filtered; large exports as a job; and every
preset's export imports back with the same preset as all unchanged."""

from __future__ import annotations

import csv
import io
import json

import pytest
from openpyxl import load_workbook

from imports.models import ImportJob, Product
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)


def _products(org, n=5, **extra):
    made = []
    for i in range(1, n + 1):
        made.append(
            Product(
                organization=org,
                sku=f"EXP-{i:03d}",
                name=f"Export {i}",
                description=f"Line one of {i}\nLine two & more",
                price=f"{i}.50",
                currency="USD",
                quantity=i,
                barcode="4006381330015" if i == 1 else "",
                category="Home > Kitchen, Dining" if i == 2 else "Home",
                brand="Kiln & Co",
                status="draft" if i == 3 else "active",
                **extra,
            )
        )
    Product.objects.bulk_create(made)


def _body(resp) -> bytes:
    return b"".join(resp.streaming_content)


def _csv(resp) -> list[list[str]]:
    return list(csv.reader(io.StringIO(_body(resp).decode("utf-8-sig"))))


def test_csv_export_streams_the_organizations_products(api, org, other_org):
    _products(org, 3)
    Product.objects.create(organization=other_org, sku="NOT-MINE", name="x", price=1)
    resp = api.get("/api/v1/products/export?format=csv")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/csv")
    assert "attachment" in resp["Content-Disposition"]
    rows = _csv(resp)
    assert rows[0][:4] == ["sku", "name", "description", "price"]
    assert [r[0] for r in rows[1:]] == ["EXP-001", "EXP-002", "EXP-003"]
    assert rows[1][3] == "1.50" and rows[1][2] == "Line one of 1\nLine two & more"


def test_export_is_formula_safe_in_csv_and_xlsx(api, org):
    for i, name in enumerate(['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tTab", "\rCR"]):
        Product.objects.create(organization=org, sku=f"F-{i}", name=name, price=1)
    rows = _csv(api.get("/api/v1/products/export?format=csv"))
    names = [r[1] for r in rows[1:]]
    assert names == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)", "'\tTab", "'\rCR"]
    resp = api.get("/api/v1/products/export?format=xlsx")
    assert resp.status_code == 200
    ws = load_workbook(io.BytesIO(_body(resp)), read_only=True).active
    cells = [row[1] for row in ws.iter_rows(min_row=2, values_only=True)]
    assert cells[0] == '\'=HYPERLINK("http://x")' and all(c.startswith("'") for c in cells)


def test_control_characters_a_worksheet_cannot_hold_are_left_out_of_the_xlsx_only(api, org):
    Product.objects.create(organization=org, sku="C-1", name="Bell\x07 and\x1f unit", price=1)
    Product.objects.create(organization=org, sku="C-2", name="\x01=1+1", price=1)
    resp = api.get("/api/v1/products/export?format=xlsx")
    assert resp.status_code == 200
    ws = load_workbook(io.BytesIO(_body(resp)), read_only=True).active
    assert [row[1] for row in ws.iter_rows(min_row=2, values_only=True)] == [
        "Bell and unit",
        "'=1+1",  # left out first, then made formula-safe
    ]
    names = [r[1] for r in _csv(api.get("/api/v1/products/export?format=csv"))[1:]]
    assert names == ["Bell\x07 and\x1f unit", "\x01=1+1"]  # the CSV has them as stored


def test_export_filters_and_bad_parameters(api, org):
    _products(org, 4)
    rows = _csv(api.get("/api/v1/products/export?status=draft"))
    assert [r[0] for r in rows[1:]] == ["EXP-003"]
    for query, text in (
        ("format=pdf", "Unknown format 'pdf'"),
        ("preset=magento", "Unknown preset 'magento'"),
        ("status=gone", "Unknown status 'gone'"),
    ):
        resp = api.get(f"/api/v1/products/export?{query}")
        assert resp.status_code == 400 and text in resp.json()["detail"]


def test_a_large_export_runs_as_a_job_with_a_download(api, org, run_worker, settings):
    settings.EXPORT_STREAM_MAX_ROWS = 3
    _products(org, 5)
    resp = api.get("/api/v1/products/export?format=xlsx&preset=shopify")
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    assert resp.json()["kind"] == "export"
    run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "completed", job.error_message
    assert (job.total_rows, job.processed_rows, job.progress) == (5, 5, 100)
    download = api.get(f"/api/v1/products/export/{job_id}/download")
    assert download.status_code == 200
    ws = load_workbook(io.BytesIO(_body(download)), read_only=True).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == "Handle" and len(rows) == 6


def test_download_of_another_tenants_export_is_404(api, outsider_api, org, run_worker, settings):
    settings.EXPORT_STREAM_MAX_ROWS = 0
    _products(org, 1)
    job_id = api.get("/api/v1/products/export").json()["id"]
    run_worker()
    assert outsider_api.get(f"/api/v1/products/export/{job_id}/download").status_code == 404


@pytest.mark.parametrize(
    ("preset", "fmt"),
    [("intake", "csv"), ("shopify", "csv"), ("woocommerce", "csv"), ("shopify", "xlsx")],
)
def test_an_export_imports_back_with_its_preset_as_all_unchanged(api, org, run_worker, preset, fmt):
    _products(org, 5)
    Product.objects.create(
        organization=org,
        sku="TRICKY",
        name="-50% sale",
        description="=not a formula",
        price="9.90",
        quantity=0,
        category="A > B",
        brand="@home",
    )
    exported = _body(api.get(f"/api/v1/products/export?format={fmt}&preset={preset}"))
    name = f"export.{fmt}"
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(exported, name), "preset": preset},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    run_worker()
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == "completed", job.error_message
    assert (job.unchanged_rows, job.created_rows, job.updated_rows, job.failed_rows) == (
        6,
        0,
        0,
        0,
    ), json.dumps(job.errors)


def test_export_streams_through_daphne_in_pieces(live, org, operator):
    """Under ASGI the export is served piece by piece (Django would read a sync iterator
    whole first); the bytes are the same file."""
    import httpx
    from rest_framework.authtoken.models import Token

    _products(org, 5000)
    token, _ = Token.objects.get_or_create(user=operator)
    url = f"{live.url}/api/v1/products/export?format=csv"
    with httpx.stream(
        "GET", url, headers={"Authorization": f"Token {token.key}"}, timeout=60
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/csv")
        pieces = [chunk for chunk in resp.iter_raw()]
    text = b"".join(pieces).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 5001 and {r[0] for r in rows[1:]} >= {"EXP-001", "EXP-5000"}
    assert len(pieces) > 1
