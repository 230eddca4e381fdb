"""Fencing and lost-worker recovery (imports/recovery.py, imports/progress.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from imports import recovery, services
from imports.models import ImportJob, JobStatus
from imports.progress import JobFenced, ProgressReporter
from realtime.events import job_topic
from realtime.log import read_after
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _job(org, rows=30) -> ImportJob:
    return services.import_job_create(
        organization=org, user=None, upload=upload(csv_bytes(product_rows(rows)))
    )


def _processing(job: ImportJob, *, heartbeat_age: float) -> ImportJob:
    ImportJob.objects.filter(pk=job.pk).update(
        status=JobStatus.PROCESSING,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )
    return ImportJob.objects.get(pk=job.pk)


def test_a_batch_report_stores_its_counts_and_answers_whether_cancel_was_asked(org):
    """The fenced job-row UPDATE answers the cancel question itself (RETURNING): no probe."""
    from imports.pipeline.validation import RowError

    job = _job(org)
    reporter = ProgressReporter(ImportJob.objects.get(pk=job.pk))
    reporter.started(first_stage="reading")
    reporter.stage("importing", total_rows=30)
    error = RowError(3, "Row 3: price 'x' is not a number", ["A", "x"])
    assert reporter.advance(10, created=9, errors=[error], checkpoint_row=11) is False
    row = ImportJob.objects.get(pk=job.pk)
    assert (row.processed_rows, row.created_rows, row.failed_rows, row.checkpoint_row) == (
        10,
        9,
        1,
        11,
    )
    assert row.errors == [{"row": 3, "message": "Row 3: price 'x' is not a number"}]
    assert row.progress == 33 and row.heartbeat_at is not None

    ImportJob.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    assert reporter.advance(10, updated=10, checkpoint_row=21) is True
    assert ImportJob.objects.get(pk=job.pk).updated_rows == 10


def test_an_older_attempts_writes_are_refused(org):
    """Two reporters of two attempts: once the job is resumed as attempt 2, nothing attempt 1
    writes lands on the row, and it learns so (JobFenced) to stop."""
    job = _job(org)
    old = ProgressReporter(ImportJob.objects.get(pk=job.pk))
    old.started(first_stage="reading")
    old.advance(10, created=10, checkpoint_row=11)

    assert recovery.job_lost(job_id=job.pk, why="test") == "resumed"
    new = ProgressReporter(ImportJob.objects.get(pk=job.pk))
    assert new.attempt == 2
    new.started(first_stage="reading")
    new.advance(5, created=5, checkpoint_row=16)

    with pytest.raises(JobFenced):
        old.advance(20, created=20, checkpoint_row=31)
    with pytest.raises(JobFenced):
        old.finished()
    with pytest.raises(JobFenced):
        old.failed("late failure of a superseded attempt")
    old.job.options = {**old.job.options, "counts": {"matched": 99}}  # a runner's own state
    with pytest.raises(JobFenced):
        old.save_options()
    with pytest.raises(JobFenced):
        old.advance(5, with_options=True)

    row = ImportJob.objects.get(pk=job.pk)
    assert (row.status, row.attempt, row.processed_rows, row.checkpoint_row) == (
        JobStatus.PROCESSING,
        2,
        15,
        16,
    )
    assert row.error_message == "" and "counts" not in row.options
    new.job.options = {**new.job.options, "counts": {"matched": 5}}
    new.save_options()
    assert ImportJob.objects.get(pk=job.pk).options["counts"] == {"matched": 5}
    new.job.options = {**new.job.options, "counts": {"matched": 7}}
    new.advance(2, with_options=True)  # the counts go with the progress, in one write
    row = ImportJob.objects.get(pk=job.pk)
    assert (row.options["counts"], row.processed_rows) == ({"matched": 7}, 17)
    new.finished()
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED


def test_a_lost_job_is_resumed_until_its_last_attempt_then_fails(org, settings):
    settings.JOB_MAX_ATTEMPTS = 2
    job = _processing(_job(org), heartbeat_age=3600)
    result = recovery.check_jobs()
    assert result.resumed == [str(job.pk)]
    job.refresh_from_db()
    assert (job.status, job.attempt) == (JobStatus.QUEUED, 2)
    events = read_after(job_topic(job.pk), None).events
    assert events[-1]["type"] == "job.resumed"
    assert events[-1]["attempt"] == 2 and events[-1]["reason"] == "worker_lost"

    _processing(job, heartbeat_age=3600)
    result = recovery.check_jobs()
    assert result.failed == [str(job.pk)]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "worker running this job was lost" in (
        job.error_message
    )
    last = read_after(job_topic(job.pk), None).events[-1]
    assert last["type"] == "job.failed" and last["reason"] == "worker_lost"


def test_a_horse_that_died_before_starting_its_job_resumes_it_as_the_next_attempt(org, settings):
    """The drills killed horses between taking a job and marking it processing: the job stayed
    queued as the same attempt until the orphan check, and a horse that dies at every start
    would never use up the job's attempts."""
    import django_rq

    settings.JOB_MAX_ATTEMPTS = 2
    job = _job(org)
    taken = job.rq_job_id
    assert recovery.horse_lost(rq_job_id=f"{job.pk}-7", detail="killed") is None  # not its own
    assert recovery.horse_lost(rq_job_id=taken, detail="killed by signal 9") == "resumed"
    job.refresh_from_db()
    assert (job.status, job.attempt, job.rq_job_id) == (JobStatus.QUEUED, 2, f"{job.pk}-2")
    assert job.rq_job_id in django_rq.get_queue("default").job_ids
    assert read_after(job_topic(job.pk), None).events[-1]["type"] == "job.resumed"
    # the periodic check leaves a queued job that RQ holds alone
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert recovery.check_jobs() == recovery.CheckResult()
    # its last attempt's horse dies at the start too: the job fails instead of looping
    assert recovery.horse_lost(rq_job_id=job.rq_job_id, detail="killed") == "failed"
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_a_fresh_heartbeat_is_not_lost(org):
    _processing(_job(org), heartbeat_age=1)
    assert recovery.check_jobs().resumed == []


def test_a_queued_job_with_nothing_behind_it_is_queued_again(org):
    import django_rq

    job = _job(org)
    django_rq.get_connection("default").flushdb()  # what a Redis restart does to the queues
    ImportJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert recovery.check_jobs().requeued == [str(job.pk)]
    assert django_rq.get_queue("default").job_ids == [job.rq_job_id]
    # queued and waiting in RQ: left alone
    ImportJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert recovery.check_jobs().requeued == []


def _long_queued(job: ImportJob) -> None:
    ImportJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=1))


@pytest.fixture
def short_grace(settings):
    settings.JOB_TAKEN_GRACE_SECONDS = 0.5
    return 0.6  # seconds to wait it out


@pytest.mark.parametrize("redis_has_lpos", [True, False], ids=["LPOS", "Redis 5, no LPOS"])
def test_a_queued_job_a_worker_took_and_dropped_is_queued_again(
    org, short_grace, monkeypatch, redis_has_lpos
):
    """RQ takes a job off its list before it marks it started; a worker stopped or killed in
    between leaves it "queued" in RQ and in no list. Checks that see it so for the grace
    queue it again; a moment is what a worker taking it looks like."""
    import django_rq
    import redis

    if not redis_has_lpos:

        def lpos(*args, **kwargs):
            raise redis.ResponseError("unknown command 'LPOS'")

        monkeypatch.setattr(redis.Redis, "lpos", lpos)
    job = _job(org)
    queue = django_rq.get_queue(job.priority)
    assert queue.connection.lpop(queue.key).decode() == job.rq_job_id  # the worker's BLPOP
    _long_queued(job)
    assert recovery.check_jobs().requeued == []  # first seen so: maybe just being taken
    assert recovery.check_jobs().requeued == []  # a moment later: still maybe
    time.sleep(short_grace)
    assert recovery.check_jobs().requeued == [str(job.pk)]
    assert queue.job_ids == [job.rq_job_id]
    _long_queued(job)
    time.sleep(short_grace)
    assert recovery.check_jobs().requeued == []  # in its list again: waiting its turn


def test_a_job_taken_into_rqs_intermediate_list_is_left_to_rq(org, short_grace):
    """A worker of one queue moves the job to RQ's intermediate list (LMOVE) instead; RQ's
    own clean-up fails one stuck there, and a failed RQ job's import is queued again."""
    import django_rq
    from rq import Worker

    job = _job(org)
    queue = django_rq.get_queue(job.priority)
    conn = queue.connection
    conn.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")
    _long_queued(job)
    assert recovery.check_jobs().requeued == []
    time.sleep(short_grace)
    assert recovery.check_jobs().requeued == []  # RQ's to end, not the check's
    # RQ's clean-up, once the job has been stuck there over a minute: it fails the job
    stuck = queue.intermediate_queue
    stuck.cleanup(Worker([queue], connection=conn), queue)  # first seen now
    conn.set(stuck.get_first_seen_key(job.rq_job_id), time.time() - 120)
    stuck.cleanup(Worker([queue], connection=conn), queue)
    assert queue.fetch_job(job.rq_job_id).get_status() == "failed"
    assert recovery.check_jobs().requeued == [str(job.pk)]
    assert queue.job_ids == [job.rq_job_id]


KILLED_AFTER_TAKING = """
import os, signal, django
django.setup()
from django.conf import settings
from redis import Redis
from imports.worker import IntakeWorker

class KilledAfterTaking(IntakeWorker):
    def reorder_queues(self, reference_queue):  # RQ's next step once BLPOP gave it a job
        os.kill(os.getpid(), signal.SIGKILL)

redis = Redis.from_url(settings.REDIS_URL)
worker = KilledAfterTaking(["high", "default", "low"], connection=redis)
worker.work(burst=False)
"""


def test_a_job_whose_worker_was_killed_between_taking_and_starting_it_runs_after_all(
    org, short_grace
):
    """The real worker, killed right after its BLPOP took the job: the job is left queued in
    RQ and in no list (a worker's warm stop there runs the job first: test_worker.py). The
    check queues it again."""
    import django_rq

    job = _job(org)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_TAKING],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "WORKER_NICE": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    queue = django_rq.get_queue(job.priority)
    assert queue.job_ids == []
    assert queue.fetch_job(job.rq_job_id).get_status() == "queued"
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.QUEUED
    _long_queued(job)
    assert recovery.check_jobs().requeued == []
    time.sleep(short_grace)
    assert recovery.check_jobs().requeued == [str(job.pk)]
    assert queue.job_ids == [job.rq_job_id]


def test_a_stalled_job_says_so_in_its_snapshot(org, settings):
    from imports.serializers import job_snapshot

    settings.JOB_STALLED_AFTER_SECONDS = 5
    job = _processing(_job(org), heartbeat_age=10)
    assert job_snapshot(job)["stalled"] is True
    job = _processing(job, heartbeat_age=1)
    assert job_snapshot(job)["stalled"] is False


def test_a_running_but_stalled_job_is_announced_as_stalled_not_resumed(org, settings, monkeypatch):
    settings.JOB_STALLED_AFTER_SECONDS = 5
    job = _processing(_job(org), heartbeat_age=3600)
    monkeypatch.setattr(recovery, "running_rq_job_ids", lambda: {job.rq_job_id})
    result = recovery.check_jobs()
    assert (result.stalled, result.resumed) == ([str(job.pk)], [])
    last = read_after(job_topic(job.pk), None).events[-1]
    assert last["type"] == "job.progress" and last["job"]["stalled"] is True
    job.refresh_from_db()
    assert (job.status, job.attempt) == (JobStatus.PROCESSING, 1)


def test_a_lost_job_whose_cancel_was_asked_ends_cancelled(org):
    job = _processing(_job(org), heartbeat_age=3600)
    ImportJob.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
    assert recovery.check_jobs().failed == [str(job.pk)]
    assert ImportJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_the_check_runs_once_per_period_across_workers(org):
    _processing(_job(org), heartbeat_age=3600)
    first = recovery.check_jobs(exclusive=True)
    second = recovery.check_jobs(exclusive=True)  # another worker, in the same period
    assert len(first.resumed) == 1 and second == recovery.CheckResult()
