"""Redis or PostgreSQL going away: nothing stored is lost and no job is left hanging."""

from __future__ import annotations

import httpx
import pytest
from redis import Redis
from rest_framework.authtoken.models import Token

from config.devservers import free_port
from imports import jobs, services
from imports.models import ImportJob, JobStatus, Product
from tests.fixtures.files import csv_bytes, product_rows, upload
from tests.fixtures.services import Daphne

pytestmark = pytest.mark.django_db(transaction=True)


def _dead_redis() -> Redis:
    return Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=30)


def test_an_import_completes_while_publishing_fails(org, monkeypatch, settings, caplog):
    """The job row is the truth: with Redis gone for events, the import still completes."""
    from realtime import publish

    settings.IMPORT_BATCH_SIZE = 10
    job = services.import_job_create(
        organization=org, user=None, upload=upload(csv_bytes(product_rows(35)))
    )
    monkeypatch.setattr(publish, "client", _dead_redis)
    jobs.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert (job.processed_rows, job.created_rows) == (35, 35)
    assert Product.objects.filter(organization=org).count() == 35
    assert "not published, Redis failed" in caplog.text


def test_a_job_whose_enqueue_fails_after_commit_is_failed_with_a_message(api, org, monkeypatch):
    """Redis answers the check, then fails as django-rq enqueues on commit: the upload gets a
    503 and the job is not left ``queued`` with nothing behind it."""
    import django_rq
    from django_rq.queues import DjangoRQ

    def dead_queue(name="default", **kw):
        return DjangoRQ(name, connection=_dead_redis(), commit_mode="on_db_commit")

    monkeypatch.setattr(django_rq, "get_queue", dead_queue)
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(csv_bytes(product_rows(3)))},
        format="multipart",
    )
    assert resp.status_code == 503, resp.content
    assert "job queue (Redis) is not reachable" in resp.json()["detail"]
    job = ImportJob.objects.get()
    assert job.status == JobStatus.FAILED
    assert "could not be queued" in job.error_message


def test_an_upload_while_redis_is_down_gets_503_and_stores_nothing(operator, daphne_env):
    """A real daphne whose REDIS_URL points at a port nobody listens on."""
    server = Daphne({**daphne_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    server.start()
    try:
        token, _ = Token.objects.get_or_create(user=operator)
        resp = httpx.post(
            f"{server.url}/api/v1/products/import",
            headers={"Authorization": f"Token {token.key}"},
            files={"file": ("products.csv", csv_bytes(product_rows(3)), "text/csv")},
            timeout=30,
        )
    finally:
        server.stop()
    assert resp.status_code == 503, resp.text
    assert "job queue (Redis) is not reachable" in resp.json()["detail"]
    assert ImportJob.objects.count() == 0
