"""Purchase orders in a real browser: upload, watch the six stages go green with no reload,
review a weak order, and screenshots of both pages (tests/e2e/artifacts/po-*.png)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from imports.purchasing.models import StoreConnection
from tests.e2e.conftest import assert_not_reloaded, log_in, mark_page, screenshot
from tests.fixtures.accounts import member
from tests.purchasing.documents import KRAEMER_TEXT, po_csv
from tests.purchasing.store_server import StoreServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def store_server():
    server = StoreServer()
    server.start()
    yield server
    server.stop()


def upload_file(page: Page, name: str, content: bytes) -> None:
    page.locator("input[name=file]").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": content}
    )
    page.get_by_role("button", name="Upload").click()


def segment(page: Page, stage: str):
    return page.locator(f'.po-detail [data-segment="{stage}"]')


def test_an_order_runs_live_to_the_store_and_a_weak_one_is_reviewed(new_page, org, store_server):
    olga = member(org, "olga")
    store_server.script = [500, 200]  # one retry in the delivery log
    StoreConnection.objects.create(
        organization=org, url=store_server.url, secret=store_server.secret
    )
    page = new_page()
    log_in(page, olga)
    page.goto("/purchase-orders/")
    expect(page.locator("#conn")).to_have_text("Live")

    upload_file(page, "spring-order.csv", po_csv(40))
    expect(page.locator("h1")).to_contain_text("PO")
    mark_page(page)
    for stage in ("parsing", "database_save", "product_drafts", "sync", "status_update"):
        expect(segment(page, stage)).to_have_attribute("data-status", "completed", timeout=60_000)
    expect(segment(page, "image_attachment")).to_have_attribute("data-status", "skipped")
    # the sections the server renders were fetched again: lines, products, delivery log
    expect(page.locator("#deliveries")).to_contain_text("HTTP 200 delivered")
    expect(page.locator("#deliveries")).to_contain_text("HTTP 500 retry")
    expect(page.locator("#lines")).to_contain_text("ACME-00001")
    expect(page.locator(".po-detail [data-po-status]")).to_have_text("Completed")
    assert_not_reloaded(page)
    screenshot(page, "po-order")

    page.goto("/purchase-orders/")
    expect(page.locator("#recent-orders")).to_contain_text("PO-1001")
    mark_page(page)
    upload_file(page, "kraemer.txt", KRAEMER_TEXT.encode())
    expect(page.locator("h1")).to_contain_text("KW-7781", timeout=30_000)
    review = page.locator("#header-fields")
    expect(review).to_contain_text("Waiting for review.")
    expect(page.locator('tr.weak[data-field-name="supplier"]')).to_contain_text(
        "not found in the document"
    )
    screenshot(page, "po-review")
    page.get_by_label("Supplier").fill("Kraemer Werkzeuge GmbH")
    page.get_by_role("button", name="Confirm and continue").click()
    expect(segment(page, "status_update")).to_have_attribute(
        "data-status", "completed", timeout=60_000
    )
    expect(page.locator("#lines")).to_contain_text("KW-300")

    page.goto("/purchase-orders/")
    expect(page.locator("#po-activity")).to_contain_text("done")
    expect(page.locator("#pipeline")).to_contain_text("Completed today")
    screenshot(page, "po-list")
