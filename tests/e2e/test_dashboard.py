"""What the people who run imports see: live pages in a real browser, no reloads."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import Page, expect

from imports import services
from imports.models import ImportJob, Role
from tests.e2e.conftest import assert_not_reloaded, log_in, mark_page, screenshot
from tests.fixtures.accounts import member
from tests.fixtures.files import HEADER, csv_bytes, product_rows

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def drop_file(page: Page, name: str, content: bytes) -> None:
    """Drop a file on the upload zone the way a person drags one from their desktop."""
    data_transfer = page.evaluate_handle(
        """([name, text]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], name, {type: "text/csv"}));
            return dt;
        }""",
        [name, content.decode()],
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": data_transfer})


def confirm_mapping(page: Page) -> None:
    """The mapping step opens under the upload form; accept its proposal."""
    step = page.locator("#mapping-step")
    expect(step).to_be_visible()
    step.get_by_role("button", name="Import with this mapping").click()
    expect(step).to_have_count(0)


def job_row(page: Page, filename: str):
    return page.locator("tr.job-row", has_text=filename)


def start_big_job(org, user, rows: int, name: str, *, staged: bool = False) -> ImportJob:
    """A job long enough to watch run (small batches: many progress events). A ``staged`` one
    waits, pending, for ``start_staged``: a page opened before it starts cannot miss its run."""
    upload = SimpleUploadedFile(name, csv_bytes(product_rows(rows)), content_type="text/csv")
    return services.import_job_create(
        organization=org, user=user, upload=upload, batch_size=100, stage_only=staged
    )


def start_staged(job: ImportJob, user) -> ImportJob:
    return services.import_job_start(
        job=job, user=user, mapping={column: column for column in HEADER}, preset=None
    )


def test_dropped_csv_runs_to_green_with_no_reload(new_page, org):
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    screenshot(page, "dashboard-empty")
    mark_page(page)
    expect(page.locator('[data-summary="completed"]')).to_have_text("0")

    drop_file(page, "spring-catalogue.csv", csv_bytes(product_rows(3000)))
    confirm_mapping(page)

    row = job_row(page, "spring-catalogue.csv")
    expect(row).to_be_visible()
    bar = row.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(bar).to_have_class("bar status-completed")
    expect(row.locator('[data-field="status"]')).to_have_text("Completed")
    expect(row.locator('[data-field="rows"]')).to_have_text("3,000 / 3,000")
    expect(page.locator('[data-summary="completed"]')).to_have_text("1")
    expect(page.locator("#activity li.act-completed")).to_contain_text(
        "spring-catalogue.csv: completed — 3,000 rows, 0 errors"
    )
    assert_not_reloaded(page)
    screenshot(page, "dashboard-completed")
    assert ImportJob.objects.get().created_rows == 3000


def test_bad_rows_listed_on_the_job_page_and_in_the_error_csv(new_page, org, tmp_path):
    olga = member(org, "olga")
    rows = list(product_rows(20))
    rows[4][3] = "-5"  # file row 6: negative price
    rows[11][0] = ""  # file row 13: no SKU
    rows[15][5] = "2.5"  # file row 17: fractional quantity
    page = new_page()
    log_in(page, olga)
    page.locator("#upload-form input[type=file]").set_input_files(
        files=[{"name": "with-errors.csv", "mimeType": "text/csv", "buffer": csv_bytes(rows)}]
    )
    confirm_mapping(page)
    row = job_row(page, "with-errors.csv")
    expect(row.locator('[data-field="status"]')).to_have_text("Completed", timeout=60_000)
    expect(row.locator('[data-field="error_count"]')).to_have_text("3")

    row.get_by_role("link", name="with-errors.csv").click()
    expect(page.locator("h1")).to_have_text("with-errors.csv")
    # an ended job's page is final: no stream to keep open, nothing "reconnecting"
    expect(page.locator("#conn")).to_have_text("Up to date (job ended)")
    errors = page.locator("#row-errors table.errors tbody tr")
    expect(errors).to_have_count(3)
    expect(errors.nth(0)).to_contain_text("6")
    expect(errors.nth(0)).to_contain_text("price")
    expect(errors.nth(1)).to_contain_text("13")
    expect(errors.nth(2)).to_contain_text("17")
    expect(page.locator('[data-field="created_rows"]')).to_have_text("17")
    expect(page.locator('[data-field="failed_rows"]')).to_have_text("3")
    screenshot(page, "job-completed-with-errors")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all errors (CSV)").click()
    path = tmp_path / "errors.csv"
    download_info.value.save_as(path)
    table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert table[0][:3] == ["row", "error", "sku"]
    assert [r[0] for r in table[1:]] == ["6", "13", "17"]
    assert table[1][2] == "SKU-000005" and table[1][5] == "'-5"  # formula-escaped cell


def test_missing_column_is_refused_with_the_message_on_the_page(new_page, org):
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    mark_page(page)
    header = [h for h in HEADER if h != "price"]
    rows = [[v for h, v in zip(HEADER, r, strict=True) if h != "price"] for r in product_rows(5)]
    page.locator("#upload-form input[type=file]").set_input_files(
        files=[{"name": "no-price.csv", "mimeType": "text/csv", "buffer": csv_bytes(rows, header)}]
    )
    # the mapping step says so before anything runs, and refuses to import
    step = page.locator("#mapping-step")
    expect(step.locator("#mapping-problem")).to_contain_text("no column is mapped to 'price'")
    expect(step.locator("tr.outcome-error")).to_have_count(5)
    step.get_by_role("button", name="Import with this mapping").click()
    expect(page.locator("#mapping-error")).to_contain_text("no column is mapped to 'price'")
    expect(page.locator("#upload-form button[type=submit]")).to_be_enabled()
    expect(page.locator("tr.job-row")).to_have_count(0)
    assert_not_reloaded(page)
    screenshot(page, "dashboard-upload-refused")
    assert ImportJob.objects.get().status == "pending"  # stored, waiting for a mapping


def test_failed_job_shows_red_with_its_reason(new_page, org):
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    # a header the upload check accepts, then a row whose quote never closes: the reader fails
    broken = b'sku,name,price\nA-1,"unterminated,1.00\n' + b"B-2,ok,2.00\n" * 3
    page.locator("#upload-form input[type=file]").set_input_files(
        files=[{"name": "broken.csv", "mimeType": "text/csv", "buffer": broken}]
    )
    confirm_mapping(page)
    row = job_row(page, "broken.csv")
    expect(row.locator('[data-field="status"]')).to_have_text("Failed", timeout=60_000)
    expect(row.get_by_role("progressbar")).to_have_class("bar status-failed")
    expect(page.locator("#activity li.act-failed")).to_contain_text("broken.csv: failed")
    screenshot(page, "dashboard-failed")
    row.get_by_role("link", name="broken.csv").click()
    expect(page.locator('[data-field="error_message"]')).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    screenshot(page, "job-failed")

    # Retry runs it again in place: a new attempt of the same job, followed live to its end
    mark_page(page)
    page.get_by_role("button", name="Retry").click()
    expect(page.locator('[data-field="attempt"]')).to_have_text("2", timeout=30_000)
    expect(page.locator("article.job-detail")).to_have_attribute("data-status", "failed")
    expect(page.locator(".timeline li")).to_have_count(4)  # the new attempt's own timeline
    assert_not_reloaded(page)


def test_a_snapshot_fetched_before_the_job_failed_does_not_put_it_back_to_processing(new_page, org):
    """The mapping step fetches the job it queued; a small job can fail before that answer
    arrives, and the stream's ``job.failed`` reach the page first. The late answer (the job as
    it was) must not overwrite the row for good: it did once, under load, in the suite."""
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    held = []  # the mapping step's GET of its job, answered only after the job has failed
    page.route(re.compile(r"/api/v1/jobs/[0-9a-f-]+$"), lambda route: held.append(route))
    broken = b'sku,name,price\nA-1,"unterminated,1.00\n' + b"B-2,ok,2.00\n" * 3
    page.locator("#upload-form input[type=file]").set_input_files(
        files=[{"name": "late.csv", "mimeType": "text/csv", "buffer": broken}]
    )
    step = page.locator("#mapping-step")
    step.get_by_role("button", name="Import with this mapping").click()
    row = job_row(page, "late.csv")
    expect(row.locator('[data-field="status"]')).to_have_text("Failed", timeout=60_000)
    for _ in range(200):  # the step's POST may answer after the job has already failed
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1, "the mapping step did not fetch its job"
    job = ImportJob.objects.get(original_filename="late.csv")
    assert job.status == "failed"
    stale = held[0].fetch().json()
    stale.update(status="processing", stage="importing", finished_at=None, error_message="")
    stale["updated_at"] = job.started_at.isoformat()  # what the job was while it ran
    held[0].fulfill(json=stale)
    expect(step).to_have_count(0)  # the step took the answer and handed the job to the table
    expect(row.locator('[data-field="status"]')).to_have_text("Failed")
    expect(row.get_by_role("progressbar")).to_have_class("bar status-failed")


def test_stream_cut_mid_job_reconnects_and_ends_showing_the_final_state(new_page, org, live_site):
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    mark_page(page)
    job = start_big_job(org, olga, 60_000, "long-run.csv")
    row = job_row(page, "long-run.csv")
    expect(row.locator('[data-field="status"]')).to_have_text("Processing", timeout=30_000)
    expect(row.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", "0")
    screenshot(page, "dashboard-running")

    live_site.stop()  # the ASGI server goes away mid-job
    expect(page.locator("#conn")).to_have_text("Reconnecting…", timeout=15_000)
    live_site.start()  # and comes back on the same port
    expect(page.locator("#conn")).to_have_text("Live", timeout=40_000)

    expect(row.locator('[data-field="status"]')).to_have_text("Completed", timeout=90_000)
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(row.locator('[data-field="rows"]')).to_have_text("60,000 / 60,000")
    expect(page.locator("#activity li.act-completed")).to_have_count(1)
    assert_not_reloaded(page)
    job.refresh_from_db()
    assert job.status == "completed"


def test_falls_back_to_polling_with_the_same_cursor_then_streams_again(new_page, org, live_site):
    olga = member(org, "olga")
    page = new_page()
    log_in(page, olga)
    mark_page(page)
    # from now on the stream route fails (as behind a proxy that breaks EventSource) ...
    page.route("**/api/v1/realtime/events*", lambda route: route.abort())
    live_site.stop()  # ... and the open stream is cut
    live_site.start()
    expect(page.locator("#conn")).to_have_text("Offline (polling)", timeout=20_000)

    start_big_job(org, olga, 300, "while-polling.csv")
    row = job_row(page, "while-polling.csv")
    expect(row.locator('[data-field="status"]')).to_have_text("Completed", timeout=30_000)
    expect(page.locator("#activity li.act-completed")).to_contain_text("while-polling.csv")

    page.unroute("**/api/v1/realtime/events*")
    expect(page.locator("#conn")).to_have_text("Live", timeout=40_000)
    start_big_job(org, olga, 300, "streamed-again.csv")
    expect(job_row(page, "streamed-again.csv").locator('[data-field="status"]')).to_have_text(
        "Completed", timeout=30_000
    )
    expect(page.locator("#activity li.act-completed")).to_have_count(2)  # nothing twice
    assert_not_reloaded(page)


def test_job_page_follows_a_running_job_to_the_end(new_page, org):
    olga = member(org, "olga")
    # Staged (pending) first, so the page is open before the job can start: a 30,000-row
    # job can finish before a page loads, and the page must be seen following it.
    job = start_big_job(org, olga, 30_000, "followed.csv", staged=True)
    page = new_page()
    log_in(page, olga)
    page.goto(f"/jobs/{job.id}/")
    mark_page(page)
    detail = page.locator("article.job-detail")
    expect(detail).to_have_attribute("data-status", "pending")
    # every status the page shows, in order (a short one would slip between polls)
    page.evaluate(
        """() => {
        const el = document.querySelector("article.job-detail");
        window.__statuses = [el.dataset.status];
        new MutationObserver(() => {
          const last = window.__statuses[window.__statuses.length - 1];
          if (el.dataset.status !== last) window.__statuses.push(el.dataset.status);
        }).observe(el, {attributes: true, attributeFilter: ["data-status"]});
      }"""
    )
    start_staged(job, olga)
    expect(detail).not_to_have_attribute("data-status", "pending", timeout=30_000)
    screenshot(page, "job-running")
    expect(detail).to_have_attribute("data-status", "completed", timeout=90_000)
    seen = page.evaluate("window.__statuses")
    assert seen[0] == "pending" and seen[-1] == "completed", seen
    assert "processing" in seen, f"the page never showed the job running: {seen}"
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator('[data-field="created_rows"]')).to_have_text("30,000")
    expect(page.locator(".timeline li").last).to_contain_text("done")
    expect(page.locator('[data-field="json"]')).to_contain_text('"status": "completed"')
    expect(page.locator("#conn")).to_have_text("Up to date (job ended)")
    assert_not_reloaded(page)
    screenshot(page, "job-completed")


def test_another_organization_sees_none_of_it(new_page, org, other_org):
    olga = member(org, "olga")
    mallory = member(other_org, "mallory", Role.ADMIN)
    theirs = new_page()
    log_in(theirs, mallory)
    mark_page(theirs)

    job = start_big_job(org, olga, 500, "org-secret.csv")
    ours = new_page()
    log_in(ours, olga)
    expect(job_row(ours, "org-secret.csv").locator('[data-field="status"]')).to_have_text(
        "Completed", timeout=60_000
    )

    # Globex's dashboard is live (its own job arrives) but got nothing of Acme's
    start_big_job(other_org, mallory, 50, "globex-own.csv")
    expect(job_row(theirs, "globex-own.csv").locator('[data-field="status"]')).to_have_text(
        "Completed", timeout=60_000
    )
    expect(theirs.locator("tr.job-row")).to_have_count(1)
    expect(theirs.locator("#activity")).not_to_contain_text("acme-secret.csv")
    expect(theirs.locator('[data-summary="completed"]')).to_have_text("1")
    assert_not_reloaded(theirs)
    # nor the page, its stream or the API: a foreign job is exactly like a missing one
    assert theirs.goto(f"/jobs/{job.id}/").status == 404
    statuses = theirs.evaluate(
        """async (id) => Promise.all([
            fetch(`/api/v1/jobs/${id}/events`).then(r => r.status),
            fetch(`/api/v1/jobs/${id}`).then(r => r.status),
            fetch(`/api/v1/realtime/events?topics=job:${id}`).then(r => r.status),
        ])""",
        str(job.id),
    )
    assert statuses == [404, 404, 404]
    theirs.goto("/")
    expect(theirs.locator("tr.job-row")).to_have_count(1)
    expect(theirs.locator("tr.job-row", has_text="acme-secret.csv")).to_have_count(0)


def test_admin_change_list_shows_a_running_jobs_progress_moving(new_page, org):
    root = member(org, "root", Role.ADMIN, is_staff=True, is_superuser=True)
    page = new_page()
    log_in(page, root)
    # staged first and started once the page follows it: it could finish before a page loads
    job = start_big_job(org, root, 60_000, "admin-watch.csv", staged=True)
    page.goto("/admin/imports/importjob/")
    expect(page.locator("#conn")).to_have_text("Live")
    # record every value the progress bars show, from the page's own point of view
    page.evaluate(
        """(id) => {
            window.__notReloaded = true;
            window.__seen = [];
            new MutationObserver((changes) => {
                for (const c of changes) {
                    window.__seen.push(Number(c.target.getAttribute("aria-valuenow")));
                }
            }).observe(document.body, {
                subtree: true, attributes: true, attributeFilter: ["aria-valuenow"],
            });
            const status = document.querySelector(`[data-job-id="${id}"][data-field="status"]`);
            window.__statuses = [status.textContent.trim()];
            new MutationObserver(() => {
                const text = status.textContent.trim();
                if (text !== window.__statuses.at(-1)) window.__statuses.push(text);
            }).observe(status, {subtree: true, childList: true, characterData: true});
        }""",
        str(job.id),
    )
    start_staged(job, root)
    status = page.locator(f'[data-job-id="{job.id}"][data-field="status"]')
    expect(status).not_to_have_text("Pending", timeout=30_000)
    screenshot(page, "admin-running")
    expect(status).to_have_text("Completed", timeout=90_000)
    assert "Processing" in page.evaluate("window.__statuses")
    bar = page.locator(f'.bar[data-job-id="{job.id}"]')
    expect(bar).to_have_attribute("aria-valuenow", "100")
    seen = page.evaluate("window.__seen")
    assert any(0 < v < 100 for v in seen), seen  # it moved, not jumped
    assert seen[-1] == 100
    assert_not_reloaded(page)

    # the change page: live state, its row errors, and the RQ link for staff
    job.refresh_from_db()  # the RQ job id it was queued with
    page.goto(f"/admin/imports/importjob/{job.id}/change/")
    expect(page.locator(".live-panel [data-field=status]")).to_have_text("Completed")
    expect(page.get_by_role("button", name="Retry job")).to_be_hidden()
    expect(page.locator(f'a[href^="/admin/rq/queues/"][href*="{job.rq_job_id}"]')).to_be_visible()


def test_usable_on_a_phone(new_page, org):
    olga = member(org, "olga")
    start_big_job(org, olga, 200, "phone.csv")
    page = new_page(viewport={"width": 390, "height": 844})
    log_in(page, olga)
    expect(job_row(page, "phone.csv").locator('[data-field="status"]')).to_have_text(
        "Completed", timeout=60_000
    )
    # nothing wider than the screen: the page never scrolls sideways (tables scroll in place)
    screenshot(page, "dashboard-phone")
    too_wide = page.evaluate(
        """() => [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
            .filter((el) => !el.closest(".table-wrap"))
            .map((el) => el.tagName + "." + el.className + "#" + el.id)"""
    )
    assert too_wide == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator("#dropzone")).to_be_in_viewport()
    screenshot(page, "dashboard-phone")


def test_desktop_notification_when_my_job_ends_asked_for_on_click_only(new_page, org):
    olga = member(org, "olga")
    colleague = member(org, "carl")
    page = new_page()
    # a stand-in for the browser's Notification API that records what the page does with it
    page.add_init_script(
        """
        window.__asked = 0;
        window.__shown = [];
        window.Notification = class {
            static permission = "default";
            static async requestPermission() {
                window.__asked += 1;
                window.Notification.permission = "granted";
                return "granted";
            }
            constructor(title, options) { window.__shown.push(title); }
        };
        """
    )
    log_in(page, olga)
    assert page.evaluate("window.__asked") == 0  # never on page load
    page.get_by_role("button", name="Notify me when my imports finish").click()
    expect(page.get_by_role("button", name="Notify me when my imports finish")).to_be_hidden()
    assert page.evaluate("window.__asked") == 1

    start_big_job(org, colleague, 50, "carls.csv")  # someone else's: no notification
    start_big_job(org, olga, 50, "mine.csv")
    for name in ("carls.csv", "mine.csv"):
        expect(job_row(page, name).locator('[data-field="status"]')).to_have_text(
            "Completed", timeout=60_000
        )
    assert page.evaluate("window.__shown") == ["mine.csv: Completed"]
