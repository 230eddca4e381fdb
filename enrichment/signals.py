"""``enrichment.failed`` on a BOM's topic whenever its run's job ends failed or cancelled, by
whatever path: the runner (a crash, a cancel it saw), the lost-worker check after the last
attempt, a cancel while queued, the job admin. Clients of ``bom:<id>`` (the BOM page, the
seed's stream) wait for an ``enrichment.*`` terminal event; ``job.failed`` goes to the job's
own topics only."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from imports.models import ImportJob, JobKind, JobStatus
from imports.progress import job_ended as reporter_job_ended
from imports.progress import job_event
from realtime.events import bom_topic
from realtime.publish import publish_together

from .selectors import run_state


def run_ended(sender: type[ImportJob], instance: ImportJob, **kwargs: Any) -> None:
    if instance.kind != JobKind.BOM_ENRICHMENT:
        return
    if instance.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return
    # only a write of the job's status: any other save of an ended job (an old run's row) must
    # not end the stream of the BOM's current run
    fields = kwargs.get("update_fields")
    if fields is None or "status" not in fields:
        return
    bom_id = instance.options.get("bom_id")
    extra: dict[str, Any] = {}
    if instance.status == JobStatus.CANCELLED:
        extra["reason"] = "cancelled"
    elif instance.error_message:
        extra["error"] = instance.error_message
    publish_together(
        [
            job_event(
                instance,
                "enrichment.failed",
                topics=[bom_topic(bom_id)],
                terminal=True,
                bom_id=bom_id,
                state=run_state(instance),
                **extra,
            )
        ]
    )


def connect() -> None:
    # the runner's reporter ends jobs with fenced updates (its own signal); the services save
    # the row with the fields they changed (post_save)
    post_save.connect(run_ended, sender=ImportJob, dispatch_uid="enrichment.run_ended")
    reporter_job_ended.connect(
        run_ended, sender=ImportJob, dispatch_uid="enrichment.reporter_run_ended"
    )
