"""What the workers run: take a job id, load the row, hand it to its kind's runner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction

from .models import ImportJob, JobKind, JobStatus
from .outages import OUTAGE_ERRORS
from .pipeline.product_import import run_product_import
from .progress import JobFenced, ProgressReporter
from .recovery import check_jobs, resume_after_outage

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
    except JobFenced:
        # presumed lost and resumed elsewhere, but alive: the newer attempt owns the job
        log.warning("job %s: attempt %s was superseded; it stops here", job_id, reporter.attempt)
    except OUTAGE_ERRORS as exc:
        # not the job's fault: the next attempt goes on after the checkpoint
        log.warning("job %s: attempt %s stopped by a database outage: %s", job_id, job.attempt, exc)
        resume_after_outage(job_id=job.pk, rq_job_id=job.rq_job_id, error=exc)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        reporter.failed(
            f"The import stopped on an internal error ({type(exc).__name__}). Retry the job; "
            "if it fails again, give the job id to an administrator (the worker log has details)."
        )
        raise


# ---------------------------------------------------------------------- worker lost

CHECK_LOST_JOB_ID = "intake-check-lost-workers"


def check_lost_workers() -> None:
    """The lost-worker check as an RQ job that schedules its own next run
    (``manage.py schedule_maintenance``). Not needed: every worker started with
    ``--with-scheduler`` runs the same check itself (``imports.worker``)."""
    try:
        check_jobs()
    finally:
        schedule_lost_worker_check()


def schedule_lost_worker_check() -> None:
    queue = django_rq.get_queue("high")
    queue.enqueue_in(
        timedelta(seconds=settings.JOB_CHECK_SECONDS),
        check_lost_workers,
        job_id=CHECK_LOST_JOB_ID,
        result_ttl=0,
        failure_ttl=3600,
    )
