"""The BOM page in a real browser: start a run, watch it live, resolve a line in place."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from enrichment import services
from enrichment.models import BomLine
from tests.e2e.conftest import assert_not_reloaded, log_in, mark_page, screenshot
from tests.fixtures.accounts import member
from tests.fixtures.enrichment import bom_csv

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


LEGEND_WATCH = """() => {
  const legend = document.querySelector(".legend");
  window.liveMatched = [];
  new MutationObserver(() => {
    if (!legend.isConnected) return;  // replaced by the server's at the end
    const text = legend.querySelector('[data-count="matched"]').textContent;
    if (window.liveMatched.at(-1) !== text) window.liveMatched.push(text);
  }).observe(legend, { subtree: true, childList: true, characterData: true });
}"""


# whether the cancel button was hidden, each time that changed
CANCEL_WATCH = """() => {
  const form = document.getElementById("cancel-form");
  window.cancelHidden = [form.hidden];
  new MutationObserver(() => window.cancelHidden.push(form.hidden))
    .observe(form, { attributes: true, attributeFilter: ["hidden"] });
}"""


def test_start_watch_and_resolve_without_a_reload(new_page, org, catalogue):
    olga = member(org, "olga")
    rows = [("U1", "1", "LM358D", "", "op amp", ""), ("D1", "10", "BAS16J,115", "", "", "")]
    rows += [(f"R{i}", "1", "RC0603FR-0710KL", "Yageo", "", "") for i in range(3000)]
    rows += [("J1", "1", "CONN", "", "", "DNP")]
    bom, _ = services.bom_create(
        organization=org,
        user=olga,
        upload=SimpleUploadedFile("rover.csv", bom_csv(rows), content_type="text/csv"),
        name="Rover main board",
    )
    page = new_page()
    log_in(page, olga)
    page.goto(f"/boms/{bom.id}/")
    expect(page.get_by_role("heading", name="Rover main board")).to_be_visible()
    expect(page.locator('[data-run="status"]')).to_have_text("Not enriched")
    mark_page(page)

    # what the legend said while the run went on, before the end's refresh replaced it
    page.evaluate(LEGEND_WATCH)
    page.evaluate(CANCEL_WATCH)
    page.get_by_label("Priority").select_option("9")
    page.get_by_role("button", name="Start enrichment").click()

    expect(page.locator('[data-run="percent"]')).to_have_text("100%", timeout=60_000)
    expect(page.locator('[data-run="status"]')).to_have_text("Completed")
    # the cancel button came with the run and went with its end
    expect(page.get_by_role("button", name="Cancel this run")).to_be_hidden()
    assert page.evaluate("window.cancelHidden")[:3] == [True, False, True]
    live = page.evaluate("window.liveMatched")
    assert live and live[-1] == "3,001", live  # the counts moved with the bar, not only at the end
    expect(page.locator('[data-count="matched"]')).to_have_text("3,001")  # refreshed at the end
    expect(page.locator('[data-count="ambiguous"]')).to_have_text("1")
    expect(page.locator('[data-count="skipped"]')).to_have_text("1")
    matched = page.locator('[data-seg="matched"]')
    assert float(matched.evaluate("el => parseFloat(el.style.width)")) > 90
    screenshot(page, "bom-enriched")

    page.locator("select[name=status]").select_option("ambiguous")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("tr", has_text="LM358D").first
    expect(row.locator(".candidates li")).to_have_count(2)
    mark_page(page)  # the filter was a navigation; resolving must not be
    row.locator("li", has_text="Texas Instruments").get_by_role("button", name="Use").click()
    expect(row.locator('[data-cell="status"]')).to_contain_text("matched")
    expect(row.locator('[data-cell="component"]')).to_contain_text("Texas Instruments")
    # the counts under the bar follow the resolution, without a reload
    expect(page.locator('[data-count="matched"]')).to_have_text("3,002")
    expect(page.locator('[data-count="ambiguous"]')).to_have_text("0")
    assert_not_reloaded(page)
    line = BomLine.objects.get(bom=bom, mpn="LM358D")
    assert (line.match_status, line.match_tier) == ("matched", "manual")


def test_a_rerun_of_the_unresolved_lines_keeps_the_other_lines_in_the_live_counts(
    new_page, org, catalogue
):
    from imports.jobs import run_job

    olga = member(org, "olga")
    rows = [("U1", "1", "LM358D", "TI", "", ""), ("R1", "1", "RC0603FR-0710KL", "Yageo", "", "")]
    rows += [("X1", "1", "NOPE-1", "", "", ""), ("J1", "1", "CONN", "", "", "DNP")]
    bom, _ = services.bom_create(
        organization=org,
        user=olga,
        upload=SimpleUploadedFile("small.csv", bom_csv(rows), content_type="text/csv"),
    )
    run_job(str(services.enrichment_start(bom=bom, user=olga, priority=9).id))
    page = new_page()
    log_in(page, olga)
    page.goto(f"/boms/{bom.id}/")
    expect(page.locator('[data-count="matched"]')).to_have_text("2")
    page.evaluate(LEGEND_WATCH)
    page.get_by_label("Only unresolved lines").check()
    page.get_by_role("button", name="Start enrichment").click()
    expect(page.locator('[data-run="items"]')).to_have_text(
        "1 / 1 lines in this run", timeout=60_000
    )
    expect(page.locator('[data-run="status"]')).to_have_text("Completed")
    # the run's one line went back to not found; the BOM's two matched lines and its skipped
    # one stayed in the counts and the bar while it ran
    assert page.evaluate("window.liveMatched") == ["2"]
    matched = page.locator('[data-seg="matched"]')
    assert round(float(matched.evaluate("el => parseFloat(el.style.width)"))) == 50
    expect(page.locator('[data-count="skipped"]')).to_have_text("1")
