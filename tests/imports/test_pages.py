"""The dashboard and job pages without JavaScript: right on first render, forms that work."""

from __future__ import annotations

import pytest

from imports import services
from imports.models import ImportJob
from realtime.events import org_topic
from realtime.log import last_id
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_pages_need_a_login(client):
    resp = client.get("/")
    assert resp.status_code == 302 and resp["Location"].startswith("/accounts/login/")


def test_dashboard_renders_state_and_the_cursor_of_that_state(client, operator, org):
    job = services.import_job_create(
        organization=org, user=operator, upload=upload(csv_bytes(product_rows(3)), "a.csv")
    )
    client.force_login(operator)
    page = client.get("/").content.decode()
    assert f'data-cursor="{last_id(org_topic(org.id))}"' in page
    assert f'data-job-id="{job.id}"' in page and "a.csv" in page
    assert 'data-summary="queued">1<' in page
    assert "a.csv: queued" in page  # the activity feed, from the event log
    assert 'role="progressbar"' in page and 'aria-valuenow="0"' in page


def test_form_upload_without_javascript_queues_a_job_and_shows_its_page(client, operator):
    client.force_login(operator)
    resp = client.post(
        "/",
        {"file": upload(csv_bytes(product_rows(4)), "plain.csv"), "mode": "create"},
        follow=True,
    )
    job = ImportJob.objects.get()
    assert resp.redirect_chain[-1][0] == f"/jobs/{job.id}/"
    assert job.options["mode"] == "create" and job.status == "queued"
    assert "&#x27;plain.csv&#x27; is queued." in resp.content.decode()


def test_form_upload_refusal_is_shown_and_makes_no_job(client, operator):
    client.force_login(operator)
    no_price = csv_bytes([["A-1", "x"]], header=["sku", "name"])
    resp = client.post("/", {"file": upload(no_price, "bad.csv"), "mode": "upsert"})
    assert resp.status_code == 400
    assert "&#x27;price&#x27; is missing" in resp.content.decode()
    assert not ImportJob.objects.exists()


def test_viewer_sees_no_upload_form_and_cannot_post_one(client, viewer):
    client.force_login(viewer)
    assert 'id="upload-form"' not in client.get("/").content.decode()
    resp = client.post("/", {"file": upload(csv_bytes(product_rows(1))), "mode": "upsert"})
    assert resp.status_code == 403
    assert "can watch imports but not upload" in resp.content.decode()
    assert not ImportJob.objects.exists()


def test_job_page_lists_row_errors_a_page_at_a_time(client, operator, org, run_worker):
    rows = list(product_rows(60))
    for r in rows:
        r[3] = "free"  # every row: price is not a number
    job = services.import_job_create(
        organization=org, user=operator, upload=upload(csv_bytes(rows))
    )
    run_worker()
    client.force_login(operator)
    first = client.get(f"/jobs/{job.id}/").content.decode()
    error_row = '<tr><td class="num">'
    assert first.count(error_row) == 50
    assert "Page 1 of 2" in first and "data-ended" in first
    second = client.get(f"/jobs/{job.id}/?page=2").content.decode()
    assert second.count(error_row) == 10
    assert f"/api/v1/products/import/{job.id}/errors.csv" in second


def test_job_actions_follow_roles_and_states(client, operator, viewer, org):
    job = services.import_job_create(
        organization=org, user=operator, upload=upload(csv_bytes(product_rows(2)))
    )
    client.force_login(viewer)
    resp = client.post(f"/jobs/{job.id}/cancel", follow=True)
    assert "can watch jobs but not change them" in resp.content.decode()
    assert ImportJob.objects.get().status == "queued"

    client.force_login(operator)
    client.post(f"/jobs/{job.id}/cancel")
    assert ImportJob.objects.get().status == "cancelled"
    resp = client.post(f"/jobs/{job.id}/cancel", follow=True)
    assert "already cancelled" in resp.content.decode()
    client.post(f"/jobs/{job.id}/retry")
    assert ImportJob.objects.get().attempt == 2
    assert client.get(f"/jobs/{job.id}/cancel").status_code == 405


def test_another_organizations_job_page_is_a_404(client, outsider, operator, org):
    job = services.import_job_create(
        organization=org, user=operator, upload=upload(csv_bytes(product_rows(2)))
    )
    client.force_login(outsider)
    assert client.get(f"/jobs/{job.id}/").status_code == 404
    assert client.post(f"/jobs/{job.id}/cancel").status_code == 404
    assert f'data-job-id="{job.id}"' not in client.get("/").content.decode()
