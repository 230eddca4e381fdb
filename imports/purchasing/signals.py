"""Keep an order's status true to its job when the job ends outside the runner.

The lost-worker check (imports/jobs.py), a cancel, or the job admin fail or cancel a job
without the runner's knowledge; the order and its running stage must then say so too, or the
order would stay "processing" forever and offer no retry.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.utils import timezone

from ..models import ImportJob, JobKind, JobStatus
from ..progress import job_ended as reporter_job_ended
from .models import POStatus, PurchaseOrder, StageStatus, WorkflowStage


def job_ended(sender: type[ImportJob], instance: ImportJob, **kwargs: Any) -> None:
    if instance.kind != JobKind.PURCHASE_ORDER:
        return
    if instance.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return
    fields = kwargs.get("update_fields")
    if fields is not None and "status" not in fields:
        return
    now = timezone.now()
    message = instance.error_message or "The job was cancelled."
    WorkflowStage.objects.filter(job=instance, status=StageStatus.RUNNING).update(
        status=StageStatus.FAILED, finished_at=now, error=message
    )
    PurchaseOrder.objects.filter(
        job=instance, status__in=[POStatus.PROCESSING, POStatus.NEEDS_REVIEW]
    ).update(status=POStatus.FAILED, updated_at=now)


def connect() -> None:
    # the job runner's reporter ends jobs with fenced updates (its own signal); the admin and
    # the services save the row (post_save)
    post_save.connect(job_ended, sender=ImportJob, dispatch_uid="purchasing.job_ended")
    reporter_job_ended.connect(
        job_ended, sender=ImportJob, dispatch_uid="purchasing.reporter_job_ended"
    )
