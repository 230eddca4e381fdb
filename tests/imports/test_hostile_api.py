"""Hostile and odd requests: bounded pages, malformed selectors, small snapshots — never a 500."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.db import connection

from imports.models import ImportJob, ImportRowError, JobStatus
from imports.progress import ProgressReporter
from imports.serializers import job_snapshot
from realtime import log
from realtime.events import job_topic

pytestmark = pytest.mark.django_db(transaction=True)


def insert_products(org, n: int) -> None:
    """``n`` products for ``org`` through COPY (what a big catalogue looks like, in a blink)."""
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        cols = "organization_id, sku, name, description, price, currency, quantity, barcode, "
        cols += "category, brand, status, created_at, updated_at"
        with cur.copy(f"COPY imports_product ({cols}) FROM STDIN") as copy:
            for i in range(n):
                row = (org.id, f"P-{i:07d}", f"Product {i}", "", "1.00", "USD", i, "", "", "")
                copy.write_row([*row, "active", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"])


# ------------------------------------------------------------------ page size caps


@pytest.mark.parametrize("param", ["limit", "page_size"])
def test_a_huge_page_size_is_clamped_to_the_maximum(api, org, param):
    insert_products(org, settings.API_MAX_PAGE_SIZE + 100)
    resp = api.get(f"/api/v1/products?{param}=29607110478293")
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == settings.API_MAX_PAGE_SIZE + 100
    assert len(body["results"]) == body["limit"] == settings.API_MAX_PAGE_SIZE
    assert "offset=500" in body["next"]


def test_default_page_size_and_page_size_alias(api, org):
    insert_products(org, 120)
    assert len(api.get("/api/v1/products").json()["results"]) == settings.API_PAGE_SIZE
    body = api.get("/api/v1/products?page_size=7&offset=100").json()
    assert [p["sku"] for p in body["results"]] == [f"P-{i:07d}" for i in range(100, 107)]


@pytest.mark.parametrize(
    "query",
    [
        "limit=²",
        "limit=-5",
        "limit=1e9",
        "limit=NaN",
        "offset=²",
        "offset=99999999999999999999999999",
        "offset=-1",
        "page_size=\uff13",
    ],
)
def test_odd_paging_values_never_fail(api, org, query):
    insert_products(org, 3)
    resp = api.get(f"/api/v1/products?{query}")
    assert resp.status_code == 200, resp.content[:300]
    assert len(resp.json()["results"]) <= settings.API_MAX_PAGE_SIZE


def test_jobs_list_is_capped_too(api, org):
    ImportJob.objects.bulk_create(
        [ImportJob(organization=org, original_filename=f"{i}.csv") for i in range(510)]
    )
    body = api.get("/api/v1/jobs?limit=100000").json()
    assert body["count"] == 510 and len(body["results"]) == settings.API_MAX_PAGE_SIZE


def test_row_errors_are_listed_a_bounded_page_at_a_time(api, outsider_api, org):
    job = ImportJob.objects.create(organization=org, status=JobStatus.COMPLETED)
    ImportRowError.objects.bulk_create(
        [
            ImportRowError(job=job, row_number=n, message=f"Row {n}: bad", values=["x"])
            for n in range(2, 702)
        ]
    )
    url = f"/api/v1/products/import/{job.id}/errors"
    body = api.get(url + "?limit=10000").json()
    assert body["count"] == 700 and len(body["results"]) == settings.API_MAX_PAGE_SIZE
    assert body["results"][0] == {"row": 2, "message": "Row 2: bad", "values": ["x"]}
    assert outsider_api.get(url).status_code == 404


@pytest.mark.parametrize("limit", ["²", "51", "-1", "1e3", "NaN"])
def test_status_limit_out_of_range_is_a_400_naming_it(api, limit):
    resp = api.get(f"/api/v1/products/import/status?limit={limit}")
    assert resp.status_code == 400
    assert "limit" in resp.json()["detail"]


def test_poll_answers_a_bounded_number_of_events(api, org):
    from realtime.publish import publish_now

    topic = f"org:{org.id}"
    for i in range(120):
        publish_now("job.progress", topics=[topic], body={"n": i})
    body = api.get(f"/api/v1/realtime/poll?topic={topic}").json()
    assert len(body["events"]) == 100
    body = api.get(f"/api/v1/realtime/poll?topic={topic}&limit=100000").json()
    assert len(body["events"]) == 120
    more = api.get(f"/api/v1/realtime/poll?topic={topic}&limit=5&after={body['cursor']}").json()
    assert more["events"] == []


@pytest.mark.parametrize("after", ["²-0", "99999999999999999999999-0", "1-²", "\uff11-1"])
def test_poll_with_a_malformed_cursor_is_a_400(api, org, after):
    resp = api.get(f"/api/v1/realtime/poll?topic=org:{org.id}&after={after}")
    assert resp.status_code == 400
    assert "after" in resp.json()["detail"]


# ------------------------------------------------------------------ organization selectors

BAD_SELECTORS = ["²", "\u0663", "99999999999999999999999999", "a b", "x" * 101, "a\x00b", "-1.5"]


@pytest.mark.parametrize("selector", BAD_SELECTORS)
def test_a_malformed_organization_param_is_a_400_naming_it(api, selector):
    resp = api.get("/api/v1/jobs", {"organization": selector})
    assert resp.status_code == 400
    assert "organization" in resp.json()["detail"].lower()


@pytest.mark.parametrize("selector", ["²", "99999999999999999999999999", "a b"])
def test_a_malformed_organization_header_is_a_400(api, selector):
    resp = api.get("/api/v1/products", HTTP_X_ORGANIZATION=selector)
    assert resp.status_code == 400
    assert "Organization" in resp.json()["detail"]


def test_a_well_formed_unknown_organization_is_still_refused(api, other_org):
    assert api.get("/api/v1/jobs", {"organization": other_org.slug}).status_code == 403
    assert api.get("/api/v1/jobs", {"organization": "123456789012"}).status_code == 403


@pytest.mark.parametrize("selector", ["²", "99999999999999999999999999"])
def test_a_malformed_organization_on_the_dashboard_is_a_400_page(client, operator, selector):
    client.force_login(operator)
    resp = client.get("/", {"organization": selector})
    assert resp.status_code == 400
    assert b"Organization" in resp.content


# ------------------------------------------------------------------ small events


def test_a_thousand_errors_on_10mb_cells_publish_small_events(org, settings):
    """Row errors quote at most ~200 characters of a cell and the snapshot carries the first
    few errors: every event stays far below a megabyte, and so does the stored job."""
    from imports.pipeline.validation import FIELDS, RowError, RowValidator, map_header

    settings.PROGRESS_MIN_INTERVAL = 0  # publish every batch
    cell = "x" * 10_000_000  # one string, shared by every row: the test stays small
    validator = RowValidator(map_header(list(FIELDS)), 2000)
    job = ImportJob.objects.create(organization=org, status=JobStatus.PROCESSING, total_rows=2000)
    reporter = ProgressReporter(job, min_interval=0)
    for start in range(2, 1002, 100):
        errors = [
            validator.check(n, [f"S-{n}", "Lamp", "", cell, cell, "1", "", "", "", ""])
            for n in range(start, start + 100)
        ]
        assert all(isinstance(e, RowError) for e in errors)
        reporter.advance(100, errors=errors)
    job.refresh_from_db()
    assert job.error_count == 1000
    events = log.read_after(job_topic(job.id), None).events
    assert len(events) >= 9
    sizes = [len(json.dumps(e)) for e in events]
    assert max(sizes) < 64 * 1024, sizes
    assert len(json.dumps(job_snapshot(job))) < 64 * 1024
    stored = ImportRowError.objects.filter(job=job).first()
    assert len(stored.message) <= 1000 and max(map(len, stored.values)) <= 1000
    assert "(10,000,000 characters)" in stored.message


@pytest.mark.parametrize("query", ["sku=a%00b", "status=%00", "sku=" + "x" * 65])
def test_product_filters_that_match_nothing_answer_an_empty_page(api, org, query):
    insert_products(org, 3)
    resp = api.get(f"/api/v1/products?{query}")
    assert resp.status_code == 200
    assert resp.json()["results"] == []


def test_the_schema_documents_error_answers(api):
    schema = api.get("/api/schema/?format=json").json()
    upload = schema["paths"]["/api/v1/products/import"]["post"]["responses"]
    assert {"400", "401", "403", "413"} <= set(upload)
    detail = schema["paths"]["/api/v1/products/import/{job_id}"]["get"]["responses"]
    assert detail["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
