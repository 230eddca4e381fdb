"""Actions on purchase orders: upload, review, retry, the store connection.

Views, the admin and the API parse input and call one of these. Each enqueues inside its
transaction (django-rq enqueues on commit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from ..models import ImportJob, JobKind, JobStatus, Membership, Organization, Role
from ..services import (
    InvalidState,
    InvalidUpload,
    ServiceError,
    UploadTooLarge,
    commit_queued,
    job_enqueue,
    require_queue,
)
from ..uploads import upload_name
from .models import POStatus, PurchaseOrder, PurchaseOrderLine, StoreConnection, WorkflowStage
from .outbound import OutboundRefused, check_url, redacted
from .parsing import ParsedOrder, source_format
from .parsing.confidence import assess, too_large
from .parsing.document import HEADER_FIELDS, LINE_FIELDS, REQUIRED_FIELDS, valid_text
from .parsing.numbers import parse_currency, parse_date, parse_decimal
from .stages import HEADER_UPDATE_FIELDS, apply_parsed_header


class Forbidden(ServiceError):
    status_code = 403


def purchase_order_create(
    *, organization: Organization, user: Any, upload: UploadedFile
) -> PurchaseOrder:
    """Store the document, create the order and its job, and queue the job."""
    name = upload_name(upload, "order")
    if upload.size is not None and upload.size > settings.PO_MAX_UPLOAD_BYTES:
        limit = settings.PO_MAX_UPLOAD_BYTES / (1024 * 1024)
        raise UploadTooLarge(f"File is larger than the {limit:g} MB limit for purchase orders.")
    fmt = source_format(name)
    if fmt is None:
        raise InvalidUpload(
            f"'{name}' is not a purchase-order format we read: upload a .csv, .tsv, .xlsx, "
            ".txt, .eml, .pdf or .json file."
        )
    if not upload.size:
        raise InvalidUpload("File is empty.")
    creator = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        job = ImportJob.objects.create(
            organization=organization,
            created_by=creator,
            kind=JobKind.PURCHASE_ORDER,
            original_filename=name,
            file_size=upload.size or 0,
        )
        order = PurchaseOrder(
            organization=organization,
            job=job,
            original_filename=name,
            source_format=fmt,
            created_by=creator,
        )
        order.source_file.save(name, upload, save=False)
        order.save()
        # the job's file is the order's: the job page and a retry find it there too
        job.file.name = order.source_file.name
        job.save(update_fields=["file", "updated_at"])
        job_enqueue(job)
    return order


def _lock(order: PurchaseOrder) -> tuple[PurchaseOrder, ImportJob]:
    # The job's row before the order's, as every other path takes them: a cancel, the
    # lost-worker check and the runner's reports lock the job, then move the order
    # (``signals.job_ended``), and the runner's transactional stages lock the job first
    # (``workflow._run_stage``). Order first, a retry and a cancel could deadlock.
    found = PurchaseOrder.objects.filter(pk=order.pk).values_list("job_id", flat=True)
    if found and found[0] is None:
        raise InvalidState("This order has no workflow run; upload its file again.")
    job = ImportJob.objects.select_for_update().filter(pk=found[0]).first() if found else None
    locked = PurchaseOrder.objects.select_for_update().filter(pk=order.pk).first() if job else None
    if locked is None:
        raise InvalidState("This order was deleted meanwhile; upload its file again.")
    return locked, job


def _continue(order: PurchaseOrder, job: ImportJob) -> None:
    """Queue the next attempt of ``job``: the runner starts at the first stage not done."""
    job.attempt += 1
    job.error_message = ""
    job.stages = []  # the timeline of the current attempt
    job.started_at = job.finished_at = job.heartbeat_at = job.cancel_requested_at = None
    job.progress = 0
    job.save()
    order.status = POStatus.PROCESSING
    order.save(update_fields=["status", "updated_at"])
    job_enqueue(job)


def _go_on(order: PurchaseOrder, step: Callable[[PurchaseOrder, ImportJob], None]) -> PurchaseOrder:
    """Lock the order's job and the order, let ``step`` check (and change) them, then queue
    the job's next attempt (``_continue``). A queue that does not answer is a 503 before
    anything changes; one that fails as the job is queued fails the job, and its order with
    it (``commit_queued``, ``signals.job_ended``): a retry then goes on from there."""
    job = ImportJob.objects.filter(pk=order.job_id).first() if order.job_id else None
    if job is not None:
        require_queue(job.priority)
    went_on: list[PurchaseOrder] = []

    def go_on() -> ImportJob:
        locked, job = _lock(order)
        step(locked, job)
        _continue(locked, job)
        went_on.append(locked)
        return job

    commit_queued(go_on)
    return went_on[0]


def purchase_order_retry(*, order: PurchaseOrder) -> PurchaseOrder:
    """Run a failed order's workflow again from the stage that failed."""

    def failed(order: PurchaseOrder, job: ImportJob) -> None:
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise InvalidState(
                f"Only a failed order can be retried; this one is {order.get_status_display()}."
            )

    return _go_on(order, failed)


def purchase_order_job_retry(*, job: ImportJob) -> ImportJob:
    """An order's job retried where jobs are (the job page, the jobs API, the admin): the
    order's own retry, so the order's status follows its job (``services.register_retry``)."""
    order = PurchaseOrder.objects.filter(job=job).first()
    if order is None:
        raise InvalidState("This job's purchase order was deleted; upload the order again.")
    purchase_order_retry(order=order)
    job.refresh_from_db()
    return job


def _bounded(name: str, value: Any) -> Any:
    """A correction no column can hold is no value (it was a DataError, a 500, at the save)."""
    return None if value is None or too_large(name, value) else value


def _scalar(raw: Any, what: str) -> Any:
    # a list or object was read through str(): {"tax": [1]} became a tax of 1
    if isinstance(raw, list | dict | bool):
        raise InvalidUpload(f"{what}: send text or a number, not {type(raw).__name__}.")
    if isinstance(raw, str) and not valid_text(raw):
        # PostgreSQL's text and jsonb hold neither: the review's save answered 500
        raise InvalidUpload(
            f"{what}: holds a NUL character or a lone surrogate, which cannot be stored."
        )
    return raw


def _parse_field(name: str, raw: Any) -> Any:
    raw = _scalar(raw, name.replace("_", " "))
    if raw in (None, ""):
        return None
    if name in ("subtotal", "tax", "total"):
        value = _bounded(name, parse_decimal(raw))
    elif name in ("order_date", "expected_date"):
        value = parse_date(raw)
    elif name == "currency":
        value = parse_currency(raw)
    else:
        value = str(raw).strip()[:200]
    if value is None:
        raise InvalidUpload(f"{name.replace('_', ' ')}: '{raw}' is not a valid value.")
    return value


def purchase_order_review(
    *,
    order: PurchaseOrder,
    user: Any,
    fields: dict[str, Any] | None = None,
    lines: list[dict[str, Any]] | None = None,
) -> PurchaseOrder:
    """Correct or confirm an order waiting for review, then go on from the next stage.

    ``fields``: header corrections (``po_number``, ``supplier``, ``order_date``, ...);
    ``lines``: ``{"line_number": n, <field>: value}`` corrections. Whatever the operator sends or
    leaves is taken as confirmed: every field scores 1.0 with who confirmed it, and failed
    checks that remain are kept as warnings.
    """
    fields = fields or {}
    lines = lines or []
    unknown = sorted(set(fields) - set(HEADER_FIELDS))
    if unknown:
        raise InvalidUpload(
            f"Unknown field(s) {', '.join(unknown)}: use {', '.join(HEADER_FIELDS)}."
        )

    def review(order: PurchaseOrder, job: ImportJob) -> None:
        if order.status != POStatus.NEEDS_REVIEW:
            raise InvalidState(
                f"The order is {order.get_status_display().lower()}, not waiting for review."
            )
        stage = WorkflowStage.objects.select_for_update().get(job=job, name="parsing")
        parsed = ParsedOrder.from_json(stage.output)
        who = getattr(user, "get_username", lambda: "an operator")()
        for name, raw in fields.items():
            parsed.set(name, _parse_field(name, raw), 1.0, f"corrected by {who}")
        by_number = {ln.line_number: ln for ln in parsed.lines}
        for correction in lines:
            number = correction.get("line_number")
            line = by_number.get(number) if isinstance(number, int) else None
            if line is None:
                raise InvalidUpload(f"Line {number!r} is not a line of this order.")
            for key, raw in correction.items():
                if key == "line_number":
                    continue
                raw = _scalar(raw, f"Line {number}: {key}")
                if key not in LINE_FIELDS:
                    raise InvalidUpload(f"Line {number}: '{key}' is not a line field.")
                if key in ("quantity", "unit_cost", "line_total"):
                    value = _bounded(key, parse_decimal(raw)) if raw not in (None, "") else None
                    if value is None and raw not in (None, ""):
                        raise InvalidUpload(
                            f"Line {number}: {key} '{str(raw)[:40]}' is not a number in range."
                        )
                    setattr(line, key, value)
                else:
                    text = str(raw or "").strip()
                    # longer than its column failed the database_save stage after review
                    limit = getattr(PurchaseOrderLine._meta.get_field(key), "max_length", None)
                    if limit and len(text) > limit:
                        raise InvalidUpload(
                            f"Line {number}: {key} is {len(text):,} characters; at most {limit}."
                        )
                    setattr(line, key, text)
            line.confidence = 1.0
            line.reasons = [*line.reasons, f"corrected by {who}"]
        assess(parsed)
        missing = [n.replace("_", " ") for n in REQUIRED_FIELDS if parsed.value(n) is None]
        if missing:
            raise InvalidUpload(f"Still missing: {', '.join(missing)}; fill them in to go on.")
        for name in HEADER_FIELDS:
            f = parsed.fields.get(name)
            if f is not None and f.value is not None and f.score < 1.0:
                f.score = 1.0
                f.reasons.append(f"confirmed by {who}")
        parsed.confidence = 1.0
        remaining = [c["message"] for c in parsed.checks if not c["ok"]]
        parsed.warnings = [*parsed.warnings, *(f"Confirmed with: {m}" for m in remaining)]
        stage.output = parsed.to_json()
        stage.summary = {**stage.summary, "reviewed_by": who, "needs_review": False}
        stage.save(update_fields=["output", "summary"])
        apply_parsed_header(order, parsed, [])
        order.reviewed_by = user if getattr(user, "is_authenticated", False) else None
        order.reviewed_at = timezone.now()
        order.save(update_fields=[*HEADER_UPDATE_FIELDS, "reviewed_by", "reviewed_at"])

    return _go_on(order, review)


def store_connection_update(
    *, organization: Organization, user: Any, url: str | None, secret: str | None
) -> StoreConnection:
    """Set the store endpoint (organization admins only). An empty URL turns sync off."""
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None or membership.role != Role.ADMIN:
        raise Forbidden("Only an organization admin can change the store connection.")
    store, _ = StoreConnection.objects.get_or_create(organization=organization)
    if url is not None:
        url = url.strip()
        if store.url and url == redacted(store.url):
            url = store.url  # the URL as it was read back (credentials hidden): unchanged
        elif "***" in url:
            # a shown URL, edited: its hidden parts would be stored as '***'
            raise InvalidUpload(
                "The URL still holds '***' where the stored URL's credentials or query values "
                "are hidden; send the whole URL, with its credentials, to change it."
            )
        if url:
            try:
                check_url(url, what="store URL")
            except OutboundRefused as exc:
                raise InvalidUpload(str(exc)) from exc
        store.url = url
    if secret is not None:
        if secret and len(secret) < 16:
            raise InvalidUpload("The signing secret must be at least 16 characters long.")
        store.secret = secret
    if store.url and not store.secret:
        raise InvalidUpload("A store URL needs a signing secret (at least 16 characters).")
    store.updated_by = user
    store.save()
    return store
