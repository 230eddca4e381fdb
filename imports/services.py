"""Actions that change jobs: create from an upload, cancel, retry, confirm a dry run.

Views, admin actions and commands parse input and call one of these. Each enqueues inside its
transaction; django-rq enqueues on commit, so a worker never sees a job row that is not there.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django_rq
import redis
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from .models import (
    ImportJob,
    ImportMode,
    ImportRowError,
    JobKind,
    JobStatus,
    Organization,
    Priority,
)
from .pipeline.readers import FileReadError, check_xlsx_package, open_source
from .pipeline.text import valid_text
from .progress import publish_job_event
from .uploads import content_hash_and_storable, upload_name

log = logging.getLogger(__name__)

ALLOWED_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".xlsm"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
MAX_BATCH_SIZE = 50_000


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidUpload(ServiceError):
    status_code = 400


class UploadTooLarge(ServiceError):
    status_code = 413


class InvalidState(ServiceError):
    status_code = 409


class QueueUnavailable(ServiceError):
    status_code = 503


QUEUE_DOWN = (
    "Jobs cannot be queued right now: the job queue (Redis) is not reachable. "
    "Nothing was started; try again in a minute."
)


def _choice(value: str | None, choices: type, label: str, default: str) -> str:
    value = default if value in (None, "") else str(value).strip().lower()
    allowed = [c.value for c in choices]
    if value not in allowed:
        raise InvalidUpload(f"Unknown {label} '{value}': use one of {', '.join(allowed)}.")
    return value


def import_options(
    *,
    mode: str | None = None,
    dry_run: bool = False,
    atomic: bool = False,
    batch_size: int | None = None,
) -> dict[str, Any]:
    if batch_size is not None and not (1 <= batch_size <= MAX_BATCH_SIZE):
        raise InvalidUpload(f"batch_size must be between 1 and {MAX_BATCH_SIZE}.")
    options: dict[str, Any] = {
        "mode": _choice(mode, ImportMode, "mode", ImportMode.UPSERT),
        "dry_run": bool(dry_run),
        "atomic": bool(atomic),
    }
    if batch_size:
        options["batch_size"] = batch_size
    return options


def check_upload(upload: UploadedFile) -> list[str]:
    """Refuse, with a message a person can act on, what a worker could never import;
    return the file's header."""
    name = upload.name or ""
    suffix = Path(name).suffix.lower()
    if upload.size is not None and upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        limit = settings.IMPORT_MAX_UPLOAD_BYTES / (1024 * 1024)
        raise UploadTooLarge(f"File is larger than the {limit:g} MB upload limit.")
    if suffix not in ALLOWED_SUFFIXES:
        raise InvalidUpload(
            f"'{name}' is not a CSV or XLSX file: upload a .csv, .tsv, .txt or .xlsx file."
        )
    if not upload.size:
        raise InvalidUpload("File is empty.")
    # Refuse a wrong file before it becomes a job, with bounded work only: this runs on the web
    # server's request thread. A CSV's header is its first record. The mapping step needs a
    # workbook's header too, so its first row is read here, but only after its zip directory
    # passed the bomb limits (entries, uncompressed size, ratio), which bound that read.
    with _local_copy(upload, suffix) as path:
        try:
            if suffix in XLSX_SUFFIXES:
                check_xlsx_package(path)  # a bomb is refused before anything unpacks it
            header = open_source(path, name).header
        except FileReadError as exc:
            raise InvalidUpload(str(exc))
    if not any(h.strip() for h in header):
        raise InvalidUpload("No header row: the first row of the file is empty.")
    if not all(map(valid_text, header)):  # the job's options hold it (jsonb): a 500 before
        raise InvalidUpload("The header row holds a NUL character: remove it and upload again.")
    # the mapping step shows a row per column, the fix-rows form a cell per column
    limit = settings.IMPORT_MAX_COLUMNS
    named = len(header)
    while named and not header[named - 1].strip():
        named -= 1  # a spreadsheet's empty columns at the right (its used range) do not count
    if named > limit:
        raise InvalidUpload(
            f"The header row has {named:,} columns; at most {limit:,} are read. "
            "Remove the columns you do not import and upload again."
        )
    longest = max(header, key=len)
    if len(longest) > MAX_COLUMN_NAME:
        raise InvalidUpload(
            f"A column name is {len(longest):,} characters long (at most {MAX_COLUMN_NAME}): "
            f"'{longest[:60]}\u2026'. Is the first row the header?"
        )
    return header


MAX_COLUMN_NAME = 1000


@contextlib.contextmanager
def _local_copy(upload: UploadedFile, suffix: str):
    temp_path = getattr(upload, "temporary_file_path", None)
    if temp_path is not None:
        yield Path(temp_path())
        return
    with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
        for part in upload.chunks():
            fh.write(part)
        fh.flush()
        upload.seek(0)
        yield Path(fh.name)


def import_job_create(
    *,
    organization: Organization,
    user: Any,
    upload: UploadedFile,
    mode: str | None = None,
    dry_run: bool = False,
    atomic: bool = False,
    priority: str | None = None,
    batch_size: int | None = None,
    mapping: dict[str, str | None] | None = None,
    preset: str | None = None,
    stage_only: bool = False,
) -> ImportJob:
    """Validate the upload, store it, create the job and queue it.

    The columns are read with ``mapping`` ({column: field or null}) and ``preset`` when given
    (a mapping sent is remembered for the organization's next file with these columns), else
    with the proposal (``mappings.mapping_propose``) when it is confident; otherwise
    ``MappingRequired`` carries the proposal. With ``stage_only`` the job is stored pending,
    for a person to confirm the mapping (``import_job_start``).
    """
    from .mappings import import_plan_decide, mapping_remember, preset_check

    options = import_options(mode=mode, dry_run=dry_run, atomic=atomic, batch_size=batch_size)
    prio = _choice(priority, Priority, "priority", Priority.DEFAULT)
    require_queue(prio)
    header = check_upload(upload)
    options["columns"] = header
    if stage_only:
        options["preset"] = preset_check(preset)
    else:
        plan, _ = import_plan_decide(
            organization=organization, header=header, mapping=mapping, preset=preset
        )
        options["mapping"], options["preset"] = plan.mapping, plan.preset
    filename = upload_name(upload, "upload.csv")
    content_sha256, storable = content_hash_and_storable(upload)

    def create() -> ImportJob:
        if mapping is not None and not stage_only:
            mapping_remember(
                organization=organization,
                user=user,
                header=header,
                mapping=mapping,
                preset=options["preset"],
            )
        job = ImportJob(
            organization=organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            kind=JobKind.PRODUCT_IMPORT,
            original_filename=filename,
            file_size=upload.size or 0,
            priority=prio,
            options=options,
        )
        job.file.save(filename, storable, save=False)
        # hashed as the upload arrived, or (a small in-memory one) while it was stored
        job.content_sha256 = content_sha256 or storable.sha256.hexdigest()  # type: ignore[attr-defined]
        earlier = earlier_import_of_same_content(job)
        if earlier is not None:
            job.warnings = [duplicate_warning(earlier)]
        job.save()
        if not stage_only:
            job_enqueue(job)
        return job

    return commit_queued(create)


def import_job_start(
    *,
    job: ImportJob,
    user: Any,
    mapping: dict[str, str | None],
    preset: str | None,
) -> ImportJob:
    """Queue a staged (pending) upload with the mapping a person confirmed, and remember
    that mapping for the organization's next file with the same columns."""
    from .mappings import file_header, import_plan_decide, mapping_remember

    def start() -> ImportJob:
        staged = ImportJob.objects.select_for_update().get(pk=job.pk)
        if staged.status != JobStatus.PENDING:
            raise InvalidState(f"This upload is already {staged.status}; its mapping is settled.")
        if not staged.file:
            raise InvalidState("The upload's file is no longer stored; upload it again.")
        header = staged.options.get("columns") or file_header(
            Path(staged.file.path), staged.original_filename
        )
        plan, _ = import_plan_decide(
            organization=staged.organization, header=header, mapping=mapping, preset=preset
        )
        mapping_remember(
            organization=staged.organization,
            user=user,
            header=header,
            mapping=mapping,
            preset=plan.preset,
        )
        staged.options = {**staged.options, "mapping": plan.mapping, "preset": plan.preset}
        staged.save(update_fields=["options", "updated_at"])
        job_enqueue(staged)
        return staged

    require_queue(job.priority)
    return commit_queued(start)


def earlier_import_of_same_content(job: ImportJob) -> ImportJob | None:
    """The newest import of the same organization, within ``IMPORT_DUPLICATE_DAYS``, whose
    file had exactly this content (dry runs do not count: they imported nothing)."""
    since = timezone.now() - timezone.timedelta(days=settings.IMPORT_DUPLICATE_DAYS)
    return (
        ImportJob.objects.filter(
            organization_id=job.organization_id,
            content_sha256=job.content_sha256,
            kind=job.kind,
            created_at__gte=since,
        )
        .exclude(pk=job.pk)
        .exclude(options__dry_run=True)
        .exclude(status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        .order_by("-created_at")
        .first()
    )


def duplicate_warning(earlier: ImportJob) -> str:
    when = earlier.created_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"This file is identical to '{earlier.original_filename}', imported on {when} "
        f"by job {earlier.id} (/jobs/{earlier.id}/); it is imported again."
    )


def require_queue(priority: str) -> None:
    """Refuse (503) before anything is stored when RQ's Redis does not answer."""
    try:
        django_rq.get_connection(priority).ping()
    except redis.RedisError as exc:
        log.warning("queue unavailable: %s", exc)
        raise QueueUnavailable(QUEUE_DOWN)


def commit_queued(make: Callable[[], ImportJob]) -> ImportJob:
    """Run ``make`` (which saves a job and calls ``job_enqueue``) in a transaction.

    django-rq enqueues when the transaction commits; should Redis fail just then, the job row
    is already committed as ``queued`` with nothing behind it. It is marked failed with a
    message saying so (a retry queues it again), and the caller gets a 503.
    """
    made: list[ImportJob] = []
    try:
        with transaction.atomic():
            made.append(make())
    except redis.RedisError as exc:
        log.warning("job not queued, Redis failed: %s", exc)
        if made:
            job_not_queued(job=made[0])
        raise QueueUnavailable(QUEUE_DOWN)
    return made[0]


def job_not_queued(*, job: ImportJob) -> None:
    """Mark a committed ``queued`` job that RQ never received as failed, saying why."""
    now = timezone.now()
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.status != JobStatus.QUEUED:
            return
        job.status = JobStatus.FAILED
        job.error_message = (
            "The job could not be queued: the job queue (Redis) was not reachable. "
            "Retry it once the service is back."
        )
        job.enter_stage("failed")
        job.finished_at = now
        job.save(
            update_fields=[
                "status",
                "error_message",
                "stage",
                "stages",
                "finished_at",
                "updated_at",
            ]
        )
        publish_job_event(job, "job.failed", reason="not_queued")


def job_enqueue(job: ImportJob, *, event: str = "job.queued", **extra: Any) -> None:
    """Queue ``job`` on its priority's queue and announce it (``event``, with ``extra``
    fields). Call inside the transaction that made it ready."""
    from .jobs import run_job

    job.rq_job_id = f"{job.id}-{job.attempt}"
    job.status = JobStatus.QUEUED
    job.enter_stage("queued")
    job.save(update_fields=["rq_job_id", "status", "stage", "stages", "updated_at"])
    django_rq.get_queue(job.priority).enqueue(
        run_job, str(job.id), job_id=job.rq_job_id, result_ttl=3600, failure_ttl=7 * 24 * 3600
    )
    publish_job_event(job, event, **extra)


def import_job_cancel(*, job: ImportJob) -> ImportJob:
    """A queued job is cancelled at once; a running one stops at its next batch."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        if job.is_terminal:
            raise InvalidState(f"Job is already {job.status}; there is nothing to cancel.")
        now = timezone.now()
        job.cancel_requested_at = now
        if job.status in (JobStatus.PENDING, JobStatus.QUEUED):
            job.status = JobStatus.CANCELLED
            job.enter_stage("cancelled")
            job.finished_at = now
            job.save(
                update_fields=[
                    "cancel_requested_at",
                    "status",
                    "stage",
                    "stages",
                    "finished_at",
                    "updated_at",
                ]
            )
            _drop_from_queue(job)
            publish_job_event(job, "job.cancelled")
        else:
            job.save(update_fields=["cancel_requested_at", "updated_at"])
    return job


def _drop_from_queue(job: ImportJob) -> None:
    if not job.rq_job_id:
        return
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    conn = django_rq.get_connection(job.priority)

    def drop() -> None:
        with contextlib.suppress(NoSuchJobError):
            Job.fetch(job.rq_job_id, connection=conn).cancel()

    # the job may not be enqueued until commit; the worker also skips non-queued jobs
    transaction.on_commit(drop)


# How a kind whose job reads no stored file, or whose objects follow its job, runs again (an
# enrichment run, a purchase order); the other kinds re-read their stored file
# (``import_job_retry``). Registered by each kind's app, as its runner is.
RETRIES: dict[str, Callable[..., ImportJob]] = {}


def register_retry(kind: str, retry: Callable[..., ImportJob]) -> None:
    """``retry(job=...)`` runs a failed or cancelled job of ``kind`` again (or raises
    ``ServiceError`` saying why it cannot): every retry path (API, job page, admin) calls it."""
    RETRIES[kind] = retry


def import_job_retry(*, job: ImportJob) -> ImportJob:
    """Run a failed or cancelled job again, as a new attempt of the same job.

    The new attempt goes on after the last batch the earlier ones committed
    (``checkpoint_row``), keeping those batches' counts and row errors: importing them again
    would refuse every one of their rows in ``create`` mode and count them ``unchanged`` in
    the others. An all-or-nothing job or a dry run committed nothing, so it starts over.
    A kind with a retry of its own (``register_retry``) runs that instead.
    """
    own = RETRIES.get(job.kind)
    if own is not None:
        return own(job=job)
    return job_retry_attempt(job, check=_file_stored)


def _file_stored(job: ImportJob) -> None:
    if not job.file:
        raise InvalidState("The job's file is no longer stored; upload it again.")
    staged = job.started_at is None and "mapping" not in job.options
    if job.kind == JobKind.PRODUCT_IMPORT and staged:
        # an upload cancelled while it waited at the mapping step: run now, it would import
        # by a guess at its columns that nobody confirmed
        raise InvalidState(
            "This upload was cancelled before its columns were mapped: upload the file again "
            "and map its columns."
        )


def job_retry_attempt(
    job: ImportJob, *, check: Callable[[ImportJob], None] | None = None
) -> ImportJob:
    """Queue the next attempt of a failed or cancelled ``job`` (``job_next_attempt``).
    ``check(locked_job)`` may refuse it (a ``ServiceError``) under the job's row lock."""
    require_queue(job.priority)

    def retry() -> ImportJob:
        locked = ImportJob.objects.select_for_update().get(pk=job.pk)
        if locked.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise InvalidState(
                f"Only failed or cancelled jobs can be retried; this one is {locked.status}."
            )
        if check is not None:
            check(locked)
        locked.cancel_requested_at = None
        job_next_attempt(locked)
        job_enqueue(locked)
        return locked

    return commit_queued(retry)


def job_next_attempt(job: ImportJob) -> None:
    """Make ``job`` its next attempt, to go on after its checkpoint. Call inside a transaction
    that holds the job's row lock; the caller queues it.

    Raising ``attempt`` also fences the earlier attempt: every write of its reporter is
    conditional on its own attempt, so a worker that is still running it stops at its next
    write instead of overwriting this one's state.
    """
    # only batches that stay committed advance the checkpoint: never an all-or-nothing job's
    # or a dry run's (the pipeline's rule), so those start over
    resume_after = job.checkpoint_row
    ImportRowError.objects.filter(job=job, row_number__gt=resume_after).delete()
    job.attempt += 1
    if resume_after:
        job.errors = [e for e in job.errors if e["row"] <= resume_after]
    else:
        for name in ImportJob.COUNTERS:
            setattr(job, name, 0)
        job.errors = []
    job.warnings, job.stages = [], []
    job.error_message = ""
    job.started_at = job.finished_at = job.heartbeat_at = None
    job.save()


def import_job_confirm(*, job: ImportJob, user: Any) -> ImportJob:
    """Import a completed dry run's stored file for real, as a new job linked to it."""
    require_queue(job.priority)

    def confirm() -> ImportJob:
        dry = ImportJob.objects.select_for_update().get(pk=job.pk)
        if not dry.dry_run:
            raise InvalidState("Only a dry run can be confirmed; this job already imported.")
        if dry.status != JobStatus.COMPLETED:
            raise InvalidState(f"The dry run is {dry.status}; confirm it once it has completed.")
        existing = dry.confirmations.exclude(
            status__in=[JobStatus.FAILED, JobStatus.CANCELLED]
        ).first()
        if existing:
            raise InvalidState(f"This dry run was already confirmed by job {existing.id}.")
        confirmed = ImportJob.objects.create(
            organization=dry.organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            kind=dry.kind,
            original_filename=dry.original_filename,
            file=dry.file.name,
            file_size=dry.file_size,
            content_sha256=dry.content_sha256,
            priority=dry.priority,
            options={**dry.options, "dry_run": False},
            source_job=dry,
        )
        job_enqueue(confirmed)
        return confirmed

    return commit_queued(confirm)
