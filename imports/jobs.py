"""What the workers run: take a job id, load the row, hand it to its kind's runner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq import Worker

from realtime.metrics import metrics

from .models import ImportJob, JobKind, JobStatus
from .pipeline.product_import import run_product_import
from .progress import ProgressReporter

log = logging.getLogger(__name__)

Runner = Callable[[ImportJob, ProgressReporter], None]

RUNNERS: dict[str, Runner] = {
    JobKind.PRODUCT_IMPORT: run_product_import,
}
# The stage a kind's runner starts in: entered (and announced) with the job's start.
FIRST_STAGES: dict[str, str] = {
    JobKind.PRODUCT_IMPORT: "reading",
}


def register_runner(kind: str, runner: Runner, *, first_stage: str | None = None) -> None:
    """Later apps (enrichment, purchase orders) plug their runners in here."""
    RUNNERS[kind] = runner
    if first_stage:
        FIRST_STAGES[kind] = first_stage
    else:
        FIRST_STAGES.pop(kind, None)


def run_job(job_id: str) -> None:
    """The RQ entry point for every kind of job."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("job %s vanished before it ran", job_id)
            return
        if job.status != JobStatus.QUEUED:
            # cancelled while queued, or a duplicate delivery of a job that already ran
            log.info("job %s is %s, not queued: skipped", job_id, job.status)
            return
        reporter = ProgressReporter(job)
        reporter.started(first_stage=FIRST_STAGES.get(job.kind))
    runner = RUNNERS.get(job.kind)
    if runner is None:
        reporter.failed(f"No worker can run jobs of kind '{job.kind}' yet.")
        return
    try:
        runner(job, reporter)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        reporter.failed(
            f"The import stopped on an internal error ({type(exc).__name__}). Retry the job; "
            "if it fails again, give the job id to an administrator (the worker log has details)."
        )
        raise


# ---------------------------------------------------------------------- worker lost

CHECK_LOST_JOB_ID = "intake-check-lost-workers"
CHECK_LOST_EVERY = timedelta(seconds=15)


def running_rq_job_ids() -> set[str]:
    """RQ job ids that a worker with a fresh heartbeat is working on right now."""
    conn = django_rq.get_connection("default")
    horizon = timezone.now() - timedelta(seconds=settings.REALTIME["WORKER_LOST_AFTER_SECONDS"])
    running = set()
    for worker in Worker.all(connection=conn):
        beat = worker.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        job_id = worker.get_current_job_id()
        if job_id and beat is not None and beat >= horizon:
            running.add(job_id)
    return running


def fail_lost_jobs() -> list[str]:
    """End ``processing`` jobs whose heartbeat is stale and that no live worker is running."""
    horizon = timezone.now() - timedelta(seconds=settings.REALTIME["WORKER_LOST_AFTER_SECONDS"])
    stale = list(ImportJob.objects.filter(status=JobStatus.PROCESSING, heartbeat_at__lt=horizon))
    if not stale:
        return []
    running = running_rq_job_ids()
    lost = []
    for job in stale:
        if job.rq_job_id in running:
            continue
        with transaction.atomic():
            job = ImportJob.objects.select_for_update().get(pk=job.pk)
            if job.status != JobStatus.PROCESSING or (
                job.heartbeat_at and job.heartbeat_at >= horizon
            ):
                continue
            seconds = (
                int((timezone.now() - job.heartbeat_at).total_seconds()) if job.heartbeat_at else 0
            )
            ProgressReporter(job).failed(
                f"The worker running this job was lost (no heartbeat for {seconds} s); "
                "retry the job to run it again.",
                reason="worker_lost",
            )
        metrics.inc("worker_lost_jobs")
        lost.append(str(job.id))
    return lost


def check_lost_workers() -> list[str]:
    """Periodic (RQ scheduler, every 15 s): fail lost jobs, then schedule the next check."""
    try:
        return fail_lost_jobs()
    finally:
        schedule_lost_worker_check()


def schedule_lost_worker_check() -> None:
    queue = django_rq.get_queue("high")
    queue.enqueue_in(
        CHECK_LOST_EVERY,
        check_lost_workers,
        job_id=CHECK_LOST_JOB_ID,
        result_ttl=0,
        failure_ttl=3600,
    )
