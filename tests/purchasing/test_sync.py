"""The sync stage against a local store: retries, Retry-After, timeouts, resumes, a killed worker.

Every test asserts what the store saw: the same Idempotency-Key and signed body on every retry
of a request, and no request applied twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings as django_settings

from imports.models import ImportJob
from imports.purchasing.models import DeliveryAttempt, PurchaseOrder, SyncBatch, WorkflowStage
from imports.recovery import check_jobs
from tests.fixtures.services import ROOT
from tests.fixtures.services import testing_database_url as database_url
from tests.purchasing.documents import po_csv
from tests.purchasing.test_workflow import post_order

pytestmark = pytest.mark.django_db(transaction=True)


def attempts_of(order_id: int) -> dict[str, int]:
    return dict(WorkflowStage.objects.filter(order_id=order_id).values_list("name", "attempt"))


def by_key(store_server) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in store_server.requests:
        out.setdefault(r.key, []).append(r)
    return out


def assert_each_retry_is_the_same_request(store_server) -> None:
    for key, sent in by_key(store_server).items():
        assert len({r.body for r in sent}) == 1, f"key {key} was sent with different bodies"
        assert len({r.signature for r in sent}) == 1
        assert all(store_server.signature_ok(r) for r in sent)


def test_a_500_is_retried_with_the_same_key_and_signature(
    api, store, store_server, fast_sync, run_worker
):
    store_server.script = [500, 200]
    order_id = post_order(api, po_csv(3)).json()["purchase_order"]["id"]
    run_worker()

    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"
    assert [r.answered for r in store_server.requests] == [500, 200]
    assert len(by_key(store_server)) == 1
    assert_each_retry_is_the_same_request(store_server)
    log = list(
        DeliveryAttempt.objects.filter(order_id=order_id).values_list(
            "attempt", "status_code", "outcome"
        )
    )
    assert log == [(1, 500, "retry"), (2, 200, "delivered")]


def test_a_429_waits_as_long_as_retry_after_says(api, store, store_server, fast_sync, run_worker):
    store_server.script = [(429, 1), 200]
    order_id = post_order(api, po_csv(2)).json()["purchase_order"]["id"]
    run_worker()

    first, second = store_server.requests
    assert first.key == second.key and first.body == second.body
    # the backoff alone is at most 0.2 s here: only Retry-After explains a 1 s wait
    assert second.at - first.at >= 1.0
    retry = DeliveryAttempt.objects.get(order_id=order_id, attempt=1)
    assert (retry.status_code, retry.outcome, retry.retry_after_seconds) == (429, "retry", 1.0)
    assert "slow down" in retry.response_excerpt
    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"


def test_a_timeout_is_retried_and_the_store_sees_a_replay_not_a_second_write(
    api, store, store_server, fast_sync, run_worker
):
    store_server.script = [("sleep", 3)]  # applied, but answered after the 1.5 s timeout
    order_id = post_order(api, po_csv(2)).json()["purchase_order"]["id"]
    run_worker()

    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"
    key = str(SyncBatch.objects.get(order_id=order_id).idempotency_key)
    assert store_server.replays == [key]
    assert list(store_server.applied) == [key]
    first = DeliveryAttempt.objects.get(order_id=order_id, attempt=1)
    assert first.outcome == "network_error" and "timed out" in first.error
    assert_each_retry_is_the_same_request(store_server)


def test_a_4xx_is_not_retried_and_fails_the_job_naming_the_stage(
    api, store, store_server, fast_sync, run_worker
):
    store_server.script = [422]
    order_id = post_order(api, po_csv(2)).json()["purchase_order"]["id"]
    run_worker()

    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "failed"
    assert len(store_server.requests) == 1
    assert order.job.status == "failed"
    assert order.job.error_message.startswith(
        "Stage 'sync' failed: The store refused request 1 of 1"
    )


def test_a_retried_order_resumes_at_sync_and_sends_nothing_twice(
    api, store, store_server, fast_sync, run_worker, monkeypatch, settings
):
    monkeypatch.setenv("PO_SYNC_BATCH_SIZE", "2")
    # request 1 goes through; request 2 fails every attempt of the first run
    store_server.script = [200, 500, 500, 500, 500]
    order_id = post_order(api, po_csv(5)).json()["purchase_order"]["id"]
    run_worker()

    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "failed"
    assert "Stage 'sync' failed" in order.job.error_message
    keys = list(
        SyncBatch.objects.filter(order=order)
        .order_by("number")
        .values_list("idempotency_key", flat=True)
    )
    assert len(keys) == 3
    products_before = set(order.lines.values_list("product_id", flat=True))

    resp = api.post(f"/api/v1/purchase-orders/{order_id}/retry")
    assert resp.status_code == 202, resp.content
    assert resp.json()["job"]["attempt"] == 2
    run_worker()

    order.refresh_from_db()
    assert order.status == "completed"
    attempts = attempts_of(order_id)
    # nothing parsed twice, no draft created twice: only sync and status ran again
    assert attempts == {
        "parsing": 1,
        "database_save": 1,
        "product_drafts": 1,
        "image_attachment": 1,
        "sync": 2,
        "status_update": 1,
    }
    assert set(order.lines.values_list("product_id", flat=True)) == products_before
    sent = by_key(store_server)
    assert list(sent) == [str(k) for k in keys]  # the stored keys, in order, and no new one
    assert len(sent[str(keys[0])]) == 1  # delivered in the first run: never sent again
    assert len(sent[str(keys[1])]) == 5  # four failures, then the retried run's success
    assert set(store_server.applied) == {str(k) for k in keys}
    assert_each_retry_is_the_same_request(store_server)
    # the retried attempt's timeline starts at sync
    timeline = [s["stage"] for s in order.job.stages]
    assert "parsing" not in timeline and timeline[-3:] == ["sync", "status_update", "done"]


def _start_worker(media_root: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": media_root,
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "high", "default", "low", "--burst"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_worker_and_horse(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and every process it started: the work horse runs in a session of
    its own (RQ calls setsid), so a process-group kill would miss it."""
    import psutil

    family = psutil.Process(worker.pid).children(recursive=True)
    for proc in family:
        proc.send_signal(signal.SIGKILL)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    psutil.wait_procs(family, timeout=10)


def test_a_worker_killed_during_sync_resumes_by_itself_and_delivers_nothing_twice(
    api, store, store_server, fast_sync, run_worker, monkeypatch, settings, media_root
):
    monkeypatch.setenv("PO_SYNC_BATCH_SIZE", "2")
    release = threading.Event()
    # request 2 is applied by the store, whose answer never comes before the kill
    store_server.script = [200, ("hang", release)]
    order_id = post_order(api, po_csv(5)).json()["purchase_order"]["id"]
    worker = _start_worker(media_root)
    try:
        deadline = time.monotonic() + 90
        while len(store_server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(store_server.requests) == 2, "the worker never reached the second request"
        assert WorkflowStage.objects.get(order_id=order_id, name="sync").status == "running"
        kill_worker_and_horse(worker)
    finally:
        if worker.poll() is None:
            kill_worker_and_horse(worker)
        release.set()

    # the lost-worker check queues the job's next attempt (any heartbeat is stale at a 0 s
    # horizon), which resumes at the interrupted stage
    settings.REALTIME = {**django_settings.REALTIME, "WORKER_LOST_AFTER_SECONDS": 0}
    order = PurchaseOrder.objects.get(pk=order_id)
    assert str(order.job_id) in check_jobs().resumed
    assert ImportJob.objects.get(pk=order.job_id).status == "queued"
    run_worker()

    order.refresh_from_db()
    assert order.status == "completed"
    keys = [
        str(k)
        for k in SyncBatch.objects.filter(order=order)
        .order_by("number")
        .values_list("idempotency_key", flat=True)
    ]
    sent = by_key(store_server)
    assert list(sent) == keys
    assert [len(sent[k]) for k in keys] == [1, 2, 1]  # only the interrupted one again
    assert store_server.replays == [keys[1]]  # ... and the store saw it as a replay
    assert set(store_server.applied) == set(keys)
    assert_each_retry_is_the_same_request(store_server)
    assert attempts_of(order_id)["product_drafts"] == 1


def test_a_lost_worker_fails_the_order_and_its_running_stage(api, org, settings):
    from django.utils import timezone

    from imports.models import JobStatus
    from imports.progress import ProgressReporter
    from imports.purchasing.models import StageStatus
    from imports.purchasing.workflow import ensure_stage_rows

    order_id = post_order(api, po_csv(1)).json()["purchase_order"]["id"]
    order = PurchaseOrder.objects.get(pk=order_id)
    job = order.job
    rows = ensure_stage_rows(job, order)
    WorkflowStage.objects.filter(pk=rows["parsing"].pk).update(status=StageStatus.RUNNING)
    job.status, job.heartbeat_at = JobStatus.PROCESSING, timezone.now()
    job.save()
    ProgressReporter(job).failed("The worker running this job was lost.", reason="worker_lost")

    order.refresh_from_db()
    assert order.status == "failed"
    parsing = WorkflowStage.objects.get(order=order, name="parsing")
    assert parsing.status == "failed" and "worker running this job was lost" in parsing.error
    assert api.post(f"/api/v1/purchase-orders/{order_id}/retry").status_code == 202
