"""What the workers run: take a job id, load the row, hand it to its kind's runner."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

from .models import ImportJob, JobKind, JobStatus
from .pipeline.product_import import run_product_import
from .progress import ProgressReporter

log = logging.getLogger(__name__)

Runner = Callable[[ImportJob, ProgressReporter], None]

RUNNERS: dict[str, Runner] = {
    JobKind.PRODUCT_IMPORT: run_product_import,
}


def register_runner(kind: str, runner: Runner) -> None:
    """Later apps (enrichment, purchase orders) plug their runners in here."""
    RUNNERS[kind] = runner


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
        reporter.started()
    runner = RUNNERS.get(job.kind)
    if runner is None:
        reporter.failed(f"No worker can run jobs of kind '{job.kind}' yet.")
        return
    try:
        runner(job, reporter)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        reporter.failed(f"The import stopped on an internal error ({type(exc).__name__}).")
        raise
