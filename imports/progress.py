"""``ProgressReporter``: the one way a running job reports.

It updates the job row (the truth) and publishes each change through ``realtime.publish()``.
Progress is written after every batch but published at most every ``PROGRESS_MIN_INTERVAL``
seconds; stage changes and terminal events are always published.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from realtime.events import job_topic, org_topic
from realtime.publish import Event, publish_together

from .models import TERMINAL_STATUSES, ImportJob, ImportRowError, JobStatus
from .outages import retrying
from .pipeline.validation import RowError
from .serializers import job_snapshot


def job_event(
    job: ImportJob,
    event_type: str,
    *,
    topics: Sequence[str] = (),
    terminal: bool | None = None,
    **extra: Any,
) -> Event:
    """``job``'s current state as an event on its own topic, its organization's feed and any
    further ``topics`` (an enrichment run's ``bom:<id>``)."""
    if terminal is None:
        terminal = event_type in ("job.completed", "job.failed", "job.cancelled")
    return Event(
        event_type,
        topics=[job_topic(job.id), org_topic(job.organization_id), *topics],
        body={"job": job_snapshot(job), **extra},
        terminal=terminal,
    )


def publish_job_event(job: ImportJob, event_type: str, **extra: Any) -> None:
    """Announce ``job``'s current state on its own topic and its organization's feed."""
    publish_together([job_event(job, event_type, **extra)])


# Sent once a job's end is written. The reporter's writes are fenced updates, which send no
# ``post_save``: an app whose objects follow a job (a purchase order) listens here. Its
# arguments mirror ``post_save``'s (``instance``, ``update_fields``) so one receiver serves both.
job_ended = Signal()


class JobCancelled(Exception):
    """Raised inside a runner when the job's cancellation was requested."""


class JobFenced(Exception):
    """A newer attempt of the job took over: this one's writes are refused, and it stops.

    A worker presumed lost (no heartbeat) may still be alive; once the job was resumed as
    attempt N + 1, nothing attempt N writes may land on the row, or it would overwrite the
    newer attempt's state.
    """


_CANCEL_ASKED = "cancel_requested_at IS NOT NULL"


class ProgressReporter:
    """Reports one attempt of a job. Every write of the job row is conditional on that
    attempt (``attempt`` fencing): a refused write raises ``JobFenced``."""

    def __init__(self, job: ImportJob, *, min_interval: float | None = None) -> None:
        self.job = job
        self.attempt = job.attempt
        self.min_interval = settings.PROGRESS_MIN_INTERVAL if min_interval is None else min_interval
        self.max_stored_errors = settings.IMPORT_MAX_STORED_ERRORS
        self._last_publish = 0.0

    # lifecycle -----------------------------------------------------------------------------

    def started(self, *, first_stage: str | None = None) -> None:
        """The job runs; with ``first_stage``, it is also in that stage, and both events go
        out together (a runner's first step follows its start at once)."""
        job = self.job
        now = timezone.now()
        job.status = JobStatus.PROCESSING
        job.started_at = job.heartbeat_at = now
        job.enter_stage("started")
        announced = [job_event(job, "job.started")]
        if first_stage:
            job.enter_stage(first_stage)
            announced.append(job_event(job, "job.stage"))
        self._save("status", "stage", "stages", "started_at", "heartbeat_at")
        publish_together(announced)

    def stage(self, name: str, *, total_rows: int | None = None) -> None:
        self.job.enter_stage(name)
        fields = ["stage", "stages", "heartbeat_at"]
        if total_rows is not None:
            self.job.total_rows = total_rows
            fields.append("total_rows")
        self.job.heartbeat_at = timezone.now()
        self._save(*fields)
        publish_job_event(self.job, "job.stage")

    def announce(
        self,
        event_type: str,
        *,
        topics: Sequence[str] = (),
        terminal: bool = False,
        throttled: bool = False,
        **extra: Any,
    ) -> bool:
        """Publish a kind's own event (``enrichment.progress``, ``workflow.stage``) with the job's
        snapshot and ``extra`` fields. A ``throttled`` one (progress) shares the job's progress
        rate limit and may be skipped; returns whether it went out."""
        if throttled:
            now = time.monotonic()
            if now - self._last_publish < self.min_interval:
                return False
            self._last_publish = now
        publish_together(
            [job_event(self.job, event_type, topics=topics, terminal=terminal, **extra)]
        )
        return True

    def warn(self, message: str) -> None:
        self.job.warnings = [*self.job.warnings, message]
        self._save("warnings")

    def save(self, *fields: str) -> bool:
        """Write ``fields`` of the job row as the job object holds them, fenced like every write
        of this attempt (``JobFenced``). Returns whether cancel was asked."""
        return self._save(*fields)

    def hold(self) -> bool:
        """Inside a transaction: lock the job's row, and raise ``JobFenced`` unless this attempt
        still owns it. A runner's writes of its own tables (a purchase order's stage rows) that
        follow in the same transaction then land only while the job is this attempt's: a
        newer attempt or an end waits for the lock, and sees them. Returns whether cancel was
        asked."""
        owned = list(
            ImportJob.objects.select_for_update()
            .filter(pk=self.job.pk, attempt=self.attempt)
            .exclude(status__in=TERMINAL_STATUSES)
            .values_list("cancel_requested_at", flat=True)
        )
        if not owned:
            raise JobFenced(
                f"job {self.job.pk}: attempt {self.attempt} was superseded by a newer attempt, "
                "or the job has ended"
            )
        return owned[0] is not None

    def save_options(self) -> None:
        """Store the job's ``options`` as they are now (a runner's own state as it goes, such
        as a BOM's counts so far): fenced like every other write of this attempt."""
        self._save("options")

    def advance(
        self,
        rows: int,
        *,
        created: int = 0,
        updated: int = 0,
        unchanged: int = 0,
        errors: Iterable[RowError] = (),
        checkpoint_row: int | None = None,
        with_options: bool = False,
    ) -> bool:
        """Count ``rows`` more handled; store their errors. Returns True when cancel was asked.
        ``with_options``: the job's ``options`` are written by the same statement (a runner's
        own state that moves with its counts, as ``save_options``: one write a chunk fewer).

        If the write fails, the job object is left as it was: inside a writer's batch
        transaction, the batch is redone and reported again, and must not count twice.
        """
        job = self.job
        before = {name: getattr(job, name) for name in self._ADVANCED}
        try:
            return self._advance(
                rows,
                created=created,
                updated=updated,
                unchanged=unchanged,
                errors=list(errors),
                checkpoint_row=checkpoint_row,
                also=("options",) if with_options else (),
            )
        except BaseException:
            for name, value in before.items():
                setattr(job, name, value)
            raise

    def reload_counts(self) -> None:
        """The counts and checkpoint as the database holds them, after an outage cut a
        batch's transaction short: its COMMIT may or may not have reached the server, and the
        job object had already counted the batch (``checkpoint_row`` then says which)."""
        fresh = (
            ImportJob.objects.filter(pk=self.job.pk, attempt=self.attempt)
            .values(*self._ADVANCED)
            .first()
        )
        if fresh is None:
            return  # a newer attempt owns the job: this one's next write is fenced
        for name, value in fresh.items():
            setattr(self.job, name, value)

    _ADVANCED = (
        "processed_rows",
        "created_rows",
        "updated_rows",
        "unchanged_rows",
        "failed_rows",
        "error_count",
        "checkpoint_row",
        "errors",
        "progress",
        "heartbeat_at",
    )

    def _advance(
        self,
        rows: int,
        *,
        created: int,
        updated: int,
        unchanged: int,
        errors: list[RowError],
        checkpoint_row: int | None,
        also: tuple[str, ...],
    ) -> bool:
        job = self.job
        job.processed_rows += rows
        job.created_rows += created
        job.updated_rows += updated
        job.unchanged_rows += unchanged
        job.failed_rows += len(errors)
        job.error_count += len(errors)
        if checkpoint_row is not None:
            job.checkpoint_row = checkpoint_row
        room = self.max_stored_errors - len(job.errors)
        if errors and room > 0:
            job.errors = job.errors + [
                {"row": e.row_number, "message": e.message} for e in errors[:room]
            ]
        if job.total_rows:
            job.progress = min(99, int(job.processed_rows * 100 / job.total_rows))
        job.heartbeat_at = timezone.now()
        return retrying(lambda: self._store_advance(errors, also), what="reporting progress")

    def _store_advance(self, errors: list[RowError], also: tuple[str, ...] = ()) -> bool:
        job = self.job
        # Inside a writer's batch transaction (a checkpointed import), this commits with the
        # batch: no savepoint of its own, a refused write rolls the batch back too.
        with transaction.atomic(savepoint=False):
            # the fenced row update first: a superseded attempt stores no row errors either
            # exactly what ``advance`` restores on a failure and ``reload_counts`` reads back
            cancelled = self._save(*self._ADVANCED, *also)
            if errors:
                ImportRowError.objects.bulk_create(
                    [
                        ImportRowError(
                            job=job, row_number=e.row_number, message=e.message, values=e.values
                        )
                        for e in errors
                    ],
                    batch_size=1000,
                )
            now = time.monotonic()
            # The last batch's progress is not published: the terminal event follows at once
            # with the same counts, and two fan-outs back to back only delay it.
            last_batch = bool(job.total_rows) and job.processed_rows >= job.total_rows
            if now - self._last_publish >= self.min_interval and not last_batch:
                self._last_publish = now
                publish_job_event(job, "job.progress")
        return cancelled

    def finished(self, *, skipped: int = 0) -> None:
        job = self.job
        job.skipped_rows += skipped
        job.status = JobStatus.COMPLETED
        job.progress = 100
        job.enter_stage("done")
        self._finish("skipped_rows", "progress")
        publish_job_event(job, "job.completed")
        job_ended.send(sender=ImportJob, instance=job, update_fields=["status"])

    def failed(self, message: str, *, reason: str = "error") -> None:
        job = self.job
        job.status = JobStatus.FAILED
        job.error_message = message
        job.enter_stage("failed")
        self._finish("error_message")
        publish_job_event(job, "job.failed", reason=reason)
        job_ended.send(sender=ImportJob, instance=job, update_fields=["status"])

    def cancelled(self) -> None:
        job = self.job
        job.status = JobStatus.CANCELLED
        job.enter_stage("cancelled")
        self._finish()
        publish_job_event(job, "job.cancelled")
        job_ended.send(sender=ImportJob, instance=job, update_fields=["status"])

    # internals -------------------------------------------------------------------------

    def _finish(self, *fields: str) -> None:
        self.job.finished_at = self.job.heartbeat_at = timezone.now()
        self._save("status", "stage", "stages", "finished_at", "heartbeat_at", *fields)

    def _save(self, *fields: str) -> bool:
        """Write ``fields`` of the job row, only while the row is still at this reporter's
        attempt and has not ended (else ``JobFenced``). Returns whether cancel was asked: the
        same statement answers it (``RETURNING``), one round trip a batch fewer than a
        separate probe."""
        job = self.job
        job.updated_at = timezone.now()
        opts = ImportJob._meta
        columns = [opts.get_field(name) for name in (*fields, "updated_at")]
        quote = connection.ops.quote_name
        sql = (
            f"UPDATE {quote(opts.db_table)} SET "
            + ", ".join(f"{quote(f.column)} = %s" for f in columns)
            + f" WHERE {quote(opts.pk.column)} = %s AND attempt = %s"
            + f" AND NOT (status = ANY(%s)) RETURNING {_CANCEL_ASKED}"
        )
        params = [
            *(f.get_db_prep_save(getattr(job, f.attname), connection) for f in columns),
            job.pk,
            self.attempt,
            sorted(status.value for status in TERMINAL_STATUSES),
        ]

        def update() -> tuple[bool] | None:
            with connection.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchone()

        row = retrying(update, what="saving the job")
        if row is None:
            raise JobFenced(
                f"job {job.pk}: attempt {self.attempt} was superseded by a newer attempt, "
                "or the job has ended"
            )
        return row[0]
