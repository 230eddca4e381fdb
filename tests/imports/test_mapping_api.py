"""The mapping through the API: presets end to end with a real worker, the 400 that carries
the proposal, remembered mappings, and the preview."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imports.models import ColumnMapping, ImportJob, Product
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)

EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"


def _post(api, content: bytes, name="products.csv", url="/api/v1/products/import", **fields):
    return api.post(url, {"file": upload(content, name), **fields}, format="multipart")


def test_shopify_export_imports_with_its_preset_detected(api, org, run_worker):
    content = (EXPORTS / "shopify_products_export.csv").read_bytes()
    resp = _post(api, content, "products_export.csv")
    assert resp.status_code == 202, resp.content
    run_worker()
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == "completed", job.error_message
    assert job.options["preset"] == "shopify"
    assert api.get(f"/api/v1/products/import/{job.id}").json()["preset"] == "shopify"
    assert (job.created_rows, job.skipped_rows, job.failed_rows) == (6, 2, 0)
    assert any("2 image rows" in w for w in job.warnings)
    tee = Product.objects.get(organization=org, sku="NW-TEE-WHT-L")
    assert tee.name == "Classic Tee - White / L" and str(tee.price) == "26.00"


def test_woocommerce_and_merchant_center_import_end_to_end(api, org, run_worker):
    woo = _post(api, (EXPORTS / "woocommerce_products.csv").read_bytes(), "wc-export.csv")
    gmc = _post(api, (EXPORTS / "merchant_center_feed.tsv").read_bytes(), "feed.tsv")
    assert woo.status_code == gmc.status_code == 202, (woo.content, gmc.content)
    run_worker()
    woo_job = ImportJob.objects.get(pk=woo.json()["id"])
    assert (woo_job.created_rows, woo_job.skipped_rows, woo_job.failed_rows) == (6, 2, 0)
    assert Product.objects.get(organization=org, sku="woo-beanie").category == (
        "Clothing > Accessories"
    )
    gmc_job = ImportJob.objects.get(pk=gmc.json()["id"])
    assert (gmc_job.created_rows, gmc_job.failed_rows) == (3, 1)
    socks = Product.objects.get(organization=org, sku="GMC-1002")
    assert (str(socks.price), socks.currency) == ("24.00", "EUR")


def test_unsure_mapping_is_a_400_with_the_proposal_then_the_sent_mapping_works(
    api, org, run_worker
):
    content = csv_bytes([["A-1", "Widget", "9.99"]], header=["Artikelnummer", "Titel", "Prise"])
    resp = _post(api, content)
    assert resp.status_code == 400
    body = resp.json()
    assert "Cannot map the required columns with confidence" in body["detail"]
    assert "'sku'" in body["detail"]
    assert body["proposal"]["mapping"]["Prise"] == "price"
    assert set(body["missing"]) >= {"sku", "price"}
    assert not ImportJob.objects.exists()

    mapping = {"Artikelnummer": "sku", "Titel": "name", "Prise": "price"}
    resp = _post(api, content, mapping=json.dumps(mapping))
    assert resp.status_code == 202, resp.content
    run_worker()
    assert Product.objects.get(organization=org, sku="A-1").name == "Widget"
    # remembered: the next file with these columns needs no mapping
    assert ColumnMapping.objects.get(organization=org).mapping == mapping
    again = _post(
        api, csv_bytes([["A-2", "Gadget", "1.50"]], header=["Titel", "Prise", "Artikelnummer"])
    )
    assert again.status_code == 202, again.content


def test_a_wrong_mapping_or_preset_is_a_clear_400(api):
    content = csv_bytes(product_rows(1))
    resp = _post(api, content, mapping=json.dumps({"sku": "sku", "name": "sku", "price": "price"}))
    assert resp.status_code == 400
    assert "columns 'sku' and 'name' are both mapped to 'sku'" in resp.json()["detail"]
    resp = _post(api, content, mapping="{not json")
    assert resp.status_code == 400 and "mapping" in resp.json()["detail"]
    resp = _post(api, content, preset="magento")
    assert resp.status_code == 400 and "Unknown preset 'magento'" in resp.json()["detail"]


def test_two_category_columns_are_not_a_refusal(api, run_worker, org):
    content = csv_bytes(
        [["S-1", "Shirt", "5", "Apparel", "simple"]],
        header=["sku", "name", "price", "Product Category", "Type"],
    )
    resp = _post(api, content)
    assert resp.status_code == 202, resp.content
    run_worker()
    assert Product.objects.get(organization=org, sku="S-1").category == "Apparel"


def test_preview_shows_the_first_rows_as_they_would_be_imported(api, org):
    Product.objects.create(
        organization=org,
        sku="SKU-000001",
        name="Product 1",
        description="Description 1",
        price="9.99",
        currency="EUR",
        quantity=1,
        category="Widgets",
        brand="Acme",
    )
    rows = list(product_rows(30))
    rows[2][3] = "abc"
    resp = _post(api, csv_bytes(rows), url="/api/v1/products/import/preview")
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["proposal"]["confident"] and body["preset"] is None
    assert len(body["rows"]) == 20
    assert body["rows"][0]["outcome"] == "unchanged"
    assert body["rows"][1]["outcome"] == "create"
    assert body["rows"][2]["outcome"] == "error"
    assert body["rows"][2]["error"].startswith("Row 4: price 'abc'")
    assert not ImportJob.objects.exists()


def test_preview_of_a_shopify_export_names_the_preset_and_skips(api):
    content = (EXPORTS / "shopify_products_export.csv").read_bytes()
    body = _post(api, content, "products_export.csv", url="/api/v1/products/import/preview").json()
    assert body["preset"] == "shopify"
    assert body["mapping"]["Variant SKU"] == "sku" and body["mapping"]["Type"] == "category"
    outcomes = [r["outcome"] for r in body["rows"]]
    assert outcomes == ["create"] * 4 + ["skip", "skip"] + ["create"] * 2
