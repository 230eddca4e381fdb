"""The mapping step and the fix-rows table, in a real browser against daphne and a worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from imports import services
from imports.models import ImportJob, Product
from tests.e2e.conftest import assert_not_reloaded, log_in, mark_page, screenshot
from tests.e2e.test_dashboard import drop_file, job_row
from tests.fixtures.accounts import member
from tests.fixtures.files import csv_bytes, product_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXPORTS = Path(__file__).resolve().parents[1] / "fixtures" / "exports"


def test_shopify_export_mapping_step_previews_live_then_imports(new_page, org):
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    mark_page(page)
    content = (EXPORTS / "shopify_products_export.csv").read_bytes()
    drop_file(page, "products_export.csv", content)

    step = page.locator("#mapping-step")
    expect(step.locator("[data-preset]")).to_have_text("Detected: Shopify product export")
    preview = step.locator("#mapping-preview tbody tr")
    expect(preview).to_have_count(8)
    expect(step.locator("tr.outcome-create")).to_have_count(6)
    expect(step.locator("tr.outcome-skip")).to_have_count(2)
    expect(preview.nth(3)).to_contain_text("Classic Tee - White / L")
    screenshot(page, "mapping-step-shopify")

    # leave the price out: the preview turns every product row red, live
    price = step.get_by_label("Variant Price", exact=True)
    expect(price).to_have_value("price")
    price.select_option("")
    expect(page.locator("#mapping-problem")).to_contain_text("no column is mapped to 'price'")
    expect(page.locator("#mapping-step tr.outcome-error")).to_have_count(8)
    screenshot(page, "mapping-step-price-left-out")
    # a column left out moves to the columns not imported, under a summary
    page.locator("#mapping-step details.unmapped summary").click()
    page.locator("#mapping-step").get_by_label("Variant Price", exact=True).select_option("price")
    expect(page.locator("#mapping-step tr.outcome-create")).to_have_count(6)

    page.locator("#mapping-step").get_by_role("button", name="Import with this mapping").click()
    row = job_row(page, "products_export.csv")
    expect(row.locator('[data-field="status"]')).to_have_text("Completed", timeout=60_000)
    assert_not_reloaded(page)
    job = ImportJob.objects.get()
    assert (job.created_rows, job.skipped_rows) == (6, 2)
    assert job.options["preset"] == "shopify"
    row.get_by_role("link", name="products_export.csv").click()
    expect(page.locator('[data-field="skipped_rows"]')).to_have_text("2")


def test_failed_rows_are_fixed_in_the_browser_and_counted_on_the_original(new_page, org):
    olga = member(org, "olga")
    rows = list(product_rows(6))
    rows[1][3] = "twelve"  # file row 3
    rows[4][9] = "retired"  # file row 6
    upload = SimpleUploadedFile("spring.csv", csv_bytes(rows), content_type="text/csv")
    job = services.import_job_create(organization=org, user=olga, upload=upload)
    page = new_page()
    log_in(page, olga)
    page.goto(f"/jobs/{job.id}/")
    expect(page.locator('[data-field="status"]')).to_have_text("Completed", timeout=60_000)
    page.reload()
    table = page.locator("#fix-form table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tr[data-row='3']")).to_contain_text("price 'twelve'")
    cell = page.get_by_label("Row 3 price")
    expect(cell).to_have_value("twelve")
    cell.fill("12.00")
    expect(cell).to_have_class("edited")
    screenshot(page, "fix-rows-editing")
    page.get_by_role("button", name="Import fixed rows").click()

    # the fix job's own page, live until it ends
    expect(page.locator("h1")).to_have_text("spring-fixes.csv")
    expect(page.locator('[data-field="status"]')).to_have_text("Completed", timeout=60_000)
    expect(page.locator('[data-field="created_rows"]')).to_have_text("1")
    assert Product.objects.get(organization=org, sku="SKU-000002").price == 12
    page.get_by_role("link", name="an earlier import").click()
    expect(page.locator("#fixed-summary")).to_contain_text("1 of 2 failed rows fixed")
    expect(page.locator("tr[data-row='3']")).to_contain_text("Fixed ✓")
    expect(page.get_by_label("Row 6 status")).to_be_editable()
    screenshot(page, "fix-rows-original-after")
