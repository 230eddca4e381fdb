"""Redis failing as an enrichment run or a component import is queued: 503, nothing hanging."""

from __future__ import annotations

import django_rq
import pytest
from django_rq.queues import DjangoRQ
from redis import Redis

from config.devservers import free_port
from imports.models import ImportJob, JobKind, JobStatus
from tests.enrichment.test_api import post_bom
from tests.fixtures.enrichment import components_csv
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)


def _dead_redis() -> Redis:
    return Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=30)


def _queue_fails_on_commit(monkeypatch) -> None:
    """Redis answers the check, then fails as django-rq enqueues on commit."""

    def dead_queue(name="default", **kw):
        return DjangoRQ(name, connection=_dead_redis(), commit_mode="on_db_commit")

    monkeypatch.setattr(django_rq, "get_queue", dead_queue)


def _queue_down(monkeypatch) -> None:
    monkeypatch.setattr(django_rq, "get_connection", lambda *a, **kw: _dead_redis())


def test_a_run_whose_enqueue_fails_is_503_failed_and_can_be_started_again(api, monkeypatch):
    bom_id = post_bom(api).json()["id"]
    url = f"/api/v1/boms/{bom_id}/enrichment/start"
    with monkeypatch.context() as m:
        _queue_fails_on_commit(m)
        resp = api.post(url, {}, format="json")
    assert resp.status_code == 503, resp.content
    assert "job queue (Redis) is not reachable" in resp.json()["detail"]
    job = ImportJob.objects.get(kind=JobKind.BOM_ENRICHMENT)
    assert job.status == JobStatus.FAILED
    assert "could not be queued" in job.error_message
    # not left queued: the next start is not a 409
    resp = api.post(url, {}, format="json")
    assert resp.status_code == 202, resp.content


def test_a_run_while_redis_is_down_is_503_and_stores_no_job(api, monkeypatch):
    bom_id = post_bom(api).json()["id"]
    _queue_down(monkeypatch)
    resp = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert resp.status_code == 503, resp.content
    assert not ImportJob.objects.filter(kind=JobKind.BOM_ENRICHMENT).exists()


@pytest.mark.parametrize("outage", [_queue_fails_on_commit, _queue_down])
def test_a_component_import_while_the_queue_fails_is_503(api, monkeypatch, outage):
    rows = [("TI", "LM358D", "", "", "", "active", "", "1", "1", "0.1", "USD", "")]
    outage(monkeypatch)
    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(components_csv(rows), "parts.csv")},
        format="multipart",
    )
    assert resp.status_code == 503, resp.content
    assert not ImportJob.objects.filter(
        kind=JobKind.COMPONENT_IMPORT, status=JobStatus.QUEUED
    ).exists()
