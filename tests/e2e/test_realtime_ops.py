"""The staff page /realtime/ in a real browser: figures from real streams, updated live."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.test_dashboard import start_big_job
from tests.fixtures.accounts import PASSWORD, member

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_watch_the_streams_they_open_appear_live(new_page, org):
    olga = member(org, "olga")
    root = member(org, "root", is_staff=True, is_superuser=True)
    # someone watching the dashboard: one SSE stream on the daphne under test
    viewer = new_page()
    viewer.goto("/accounts/login/")
    viewer.get_by_label("Username").fill(olga.username)
    viewer.get_by_label("Password").fill(PASSWORD)
    viewer.get_by_role("button", name="Log in").click()
    expect(viewer.locator("#conn")).to_have_text("Live")

    page = new_page()
    page.goto("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(root.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Realtime streams").click()
    expect(page.locator("h1")).to_have_text("Realtime streams")
    assert page.url.endswith("/realtime/")
    expect(page.locator('[data-field="open_streams.sse"]')).to_have_text("1", timeout=10_000)

    # a second viewer tab: the page shows it without a reload, from its JSON poll
    page.evaluate("window.__notReloaded = true")
    second = new_page()
    second.goto("/accounts/login/")
    second.get_by_label("Username").fill(olga.username)
    second.get_by_label("Password").fill(PASSWORD)
    second.get_by_role("button", name="Log in").click()
    expect(second.locator("#conn")).to_have_text("Live")
    expect(page.locator('[data-field="open_streams.sse"]')).to_have_text("2", timeout=10_000)
    expect(page.locator('[data-field="open_streams_total"]')).to_have_text("2")
    expect(page.locator("#ops-state")).to_contain_text("Updated")
    assert page.evaluate("window.__notReloaded === true")

    # an import runs: its events reach both viewers, and the page charts how fast
    for n in range(2):
        start_big_job(org, olga, rows=3000, name=f"ops-{n}.csv")
    expect(page.locator('[data-field="p50_ms"]')).to_have_text(
        re.compile(r"^\d[\d.,]* ms$"), timeout=30_000
    )
    expect(page.locator('[data-field="p99_ms"]')).to_have_text(re.compile(r"^\d[\d.,]* ms$"))
    expect(page.locator('svg[data-chart="latency"] path.s1')).to_have_attribute(
        "d", re.compile("^M")
    )
    assert page.evaluate("window.__notReloaded === true")
    screenshot(page, "realtime-ops")


def test_a_member_who_is_not_staff_is_sent_to_log_in(new_page, org):
    olga = member(org, "olga")
    page = new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(olga.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto("/realtime/")
    assert "/admin/login/" in page.url
    expect(page.locator('[data-field="open_streams_total"]')).to_have_count(0)
