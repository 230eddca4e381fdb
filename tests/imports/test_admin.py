"""The admin: every page staff use renders, and the job actions call the services."""

from __future__ import annotations

import pytest

from imports import services
from imports.models import ImportJob
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_pages_render(staff_client, org, run_worker):
    rows = list(product_rows(3))
    rows[0][3] = "x"
    job = services.import_job_create(organization=org, user=None, upload=upload(csv_bytes(rows)))
    run_worker()
    for url in (
        "/admin/imports/importjob/",
        "/admin/imports/importjob/?status__exact=completed",
        f"/admin/imports/importjob/{job.pk}/change/",
        "/admin/imports/product/?q=SKU-000002",
        "/admin/imports/organization/",
        f"/admin/imports/organization/{org.pk}/change/",
        "/admin/imports/membership/",
        "/admin/rq/",
    ):
        resp = staff_client.get(url)
        assert resp.status_code == 200, url
    page = staff_client.get(f"/admin/imports/importjob/{job.pk}/change/").content.decode()
    assert "Row 2: price &#x27;x&#x27; is not a number" in page
    assert f"/api/v1/jobs/{job.pk}/errors.csv?organization={job.organization_id}" in page
    assert 'role="progressbar"' in staff_client.get("/admin/imports/importjob/").content.decode()


def test_admin_cancel_and_retry_actions(staff_client, org):
    job = services.import_job_create(
        organization=org, user=None, upload=upload(csv_bytes(product_rows(2)))
    )
    resp = staff_client.post(
        "/admin/imports/importjob/",
        {"action": "cancel_jobs", "_selected_action": [job.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    assert ImportJob.objects.get(pk=job.pk).status == "cancelled"
    staff_client.post(
        "/admin/imports/importjob/", {"action": "retry_jobs", "_selected_action": [job.pk]}
    )
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("queued", 2)
    resp = staff_client.post(
        "/admin/imports/importjob/",
        {"action": "retry_jobs", "_selected_action": [job.pk]},
        follow=True,
    )
    assert "Only failed or cancelled jobs can be retried" in resp.content.decode()


def test_change_page_buttons_cancel_then_retry_and_link_to_the_rq_job(staff_client, org):
    job = services.import_job_create(
        organization=org, user=None, upload=upload(csv_bytes(product_rows(2)))
    )
    page = staff_client.get(f"/admin/imports/importjob/{job.pk}/change/").content.decode()
    assert f"/admin/rq/queues/0/{job.rq_job_id}/" in page  # "default" sorts first of the queues
    assert f'data-stream="/api/v1/jobs/{job.pk}/events' in page

    assert staff_client.get(f"/admin/imports/importjob/{job.pk}/cancel/run/").status_code == 405
    resp = staff_client.post(f"/admin/imports/importjob/{job.pk}/cancel/run/", follow=True)
    assert "Cancelled 1 job(s)." in resp.content.decode()
    assert ImportJob.objects.get(pk=job.pk).status == "cancelled"
    staff_client.post(f"/admin/imports/importjob/{job.pk}/retry/run/")
    job.refresh_from_db()
    assert (job.status, job.attempt) == ("queued", 2)
    assert staff_client.post(f"/admin/imports/importjob/{job.pk}/nope/run/").status_code == 404
