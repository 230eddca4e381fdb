"""The purchase-order runner: one RQ job per attempt, stage state in PostgreSQL.

Each run (an ``ImportJob`` of kind ``purchase_order``) keeps a ``WorkflowStage`` row per stage.
The runner walks the stages in order and skips every one already ``completed`` or ``skipped``,
so a retry starts at the stage that failed and reads what the earlier ones stored (the parse
result is the parsing stage's ``output``) — Dagster's re-execution from failure, with no
workflow engine and no RQ ``depends_on`` chain (whose state expires).

A stage whose effects are all in PostgreSQL commits them together with its ``completed`` row:
it happens once or not at all. The image and sync stages reach outside; they are idempotent
instead (stored files are not fetched again, idempotency keys are stored before the first
attempt and reused).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from realtime.publish import publish_now

from ..models import ImportJob, JobStatus
from ..outages import OUTAGE_ERRORS
from ..pipeline.text import storable
from ..progress import JobFenced, ProgressReporter, job_event
from .models import POStatus, PurchaseOrder, StageStatus, WorkflowStage

log = logging.getLogger(__name__)

STAGES = (
    "parsing",
    "database_save",
    "product_drafts",
    "image_attachment",
    "sync",
    "status_update",
)
STAGE_LABELS = {
    "parsing": "Parsing",
    "database_save": "Saving",
    "product_drafts": "Product drafts",
    "image_attachment": "Images",
    "sync": "Store sync",
    "status_update": "Status",
}
# stages whose every effect is a database write: committed with their completed row. Parsing
# is not among them: reading a large document takes long, and a transaction would hold the
# job's row (and so a cancel) all that time; its one write is its result's ``commit``.
TRANSACTIONAL = frozenset({"database_save", "product_drafts", "status_update"})


class StageError(Exception):
    """A stage cannot finish; the message is for the user and names what to do."""


@dataclass
class StageResult:
    status: str = StageStatus.COMPLETED
    message: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] | None = None
    # the order waits for a person (needs_review) before the next stage
    pause: bool = False
    # a stage outside a transaction: its database writes, committed with its completed row
    commit: Callable[[], None] | None = None


class StageContext:
    """What a stage function gets: the job, the order, its stage row and a progress call."""

    def __init__(
        self, job: ImportJob, order: PurchaseOrder, reporter: ProgressReporter, row: WorkflowStage
    ) -> None:
        self.job = job
        self.order = order
        self.reporter = reporter
        self.row = row
        self.index = STAGES.index(row.name)
        self._last_progress = 0.0

    def stage_output(self, name: str) -> dict[str, Any]:
        """A completed earlier stage's stored output (the parse result, for instance)."""
        return (
            WorkflowStage.objects.filter(job=self.job, name=name)
            .values_list("output", flat=True)
            .first()
            or {}
        )

    def stage_summary(self, name: str) -> dict[str, Any]:
        return (
            WorkflowStage.objects.filter(job=self.job, name=name)
            .values_list("summary", flat=True)
            .first()
            or {}
        )

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Report ``done`` of ``total`` within this stage (throttled), and beat the heartbeat."""
        percent = int(done * 100 / total) if total else 100
        job = self.job
        job.progress = min(99, int((self.index * 100 + percent) / len(STAGES)))
        job.processed_rows = done
        job.total_rows = total
        job.heartbeat_at = timezone.now()
        # fenced: a superseded attempt stops here (JobFenced)
        self.reporter.save("progress", "processed_rows", "total_rows", "heartbeat_at")
        now = time.monotonic()
        if now - self._last_progress < self.reporter.min_interval:
            return
        self._last_progress = now
        fields = event_fields(self, progress=percent, message=message)
        if transaction.get_connection().in_atomic_block:
            # a database stage runs in one transaction, and events wait for its commit: its
            # progress would all arrive at the end. Progress is only a notification (the next
            # event carries the truth), so it goes out now.
            event = job_event(job, "workflow.progress", **fields)
            publish_now(event.type, topics=event.topics, body=event.body)
        else:
            self.reporter.announce("workflow.progress", **fields)

    def beat(self) -> None:
        """Keep the job's heartbeat fresh while waiting (a store's Retry-After); a superseded
        attempt stops here (``JobFenced``) instead of sending on beside the newer one."""
        self.job.heartbeat_at = timezone.now()
        self.reporter.save("heartbeat_at")


def event_fields(ctx: StageContext, **extra: Any) -> dict[str, Any]:
    return {
        "stage": ctx.row.name,
        "poId": ctx.order.id,
        "workflowId": str(ctx.job.id),
        **extra,
    }


StageFn = Callable[[StageContext], StageResult]


def ensure_stage_rows(job: ImportJob, order: PurchaseOrder) -> dict[str, WorkflowStage]:
    WorkflowStage.objects.bulk_create(
        [WorkflowStage(job=job, order=order, name=n, position=i) for i, n in enumerate(STAGES)],
        ignore_conflicts=True,
    )
    return {s.name: s for s in WorkflowStage.objects.filter(job=job).defer("output")}


def run_purchase_order(job: ImportJob, reporter: ProgressReporter) -> None:
    """The ``purchase_order`` runner (``register_runner`` in ``imports/apps.py``)."""
    from .stages import STAGE_FUNCTIONS

    order = PurchaseOrder.objects.filter(job=job).first()
    if order is None:
        reporter.failed("This job has no purchase order (it was deleted); upload the file again.")
        return
    rows = ensure_stage_rows(job, order)
    done = (StageStatus.COMPLETED, StageStatus.SKIPPED)
    if order.status != POStatus.PROCESSING and any(r.status not in done for r in rows.values()):
        # a resumed attempt whose every stage had finished (the worker was lost after the
        # last one) leaves the order as that stage left it: completed
        PurchaseOrder.objects.filter(pk=order.pk).update(status=POStatus.PROCESSING)
        order.status = POStatus.PROCESSING
    for name in STAGES:
        row = rows[name]
        if row.status in done:
            if row.summary.get("needs_review"):
                # parsed, never reviewed (the job was cancelled or retried while it waited)
                _pause_for_review(StageContext(job, order, reporter, row))
                return
            continue  # done in an earlier attempt: its stored output is reused, not redone
        if ImportJob.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists():
            reporter.cancelled()  # between stages: each stage stays whole
            return
        ctx = StageContext(job, order, reporter, row)
        result = _run_stage(ctx, STAGE_FUNCTIONS[name])
        if result is None:
            return  # failed, and said so
        if result.pause:
            _pause_for_review(ctx)
            return
    with transaction.atomic():
        reporter.hold()
        # every stage is done, so the order is: a retry of a job that ended after its last
        # stage had committed (a cancel, a lost worker) set it back to processing
        PurchaseOrder.objects.filter(pk=order.pk, status=POStatus.PROCESSING).update(
            status=POStatus.COMPLETED, updated_at=timezone.now()
        )
    order.refresh_from_db(fields=["line_count", "confidence", "status"])
    reporter.announce(
        "workflow.completion",
        stage=STAGES[-1],
        poId=order.id,
        workflowId=str(job.id),
        lineItems=order.line_count,
        confidence=float(order.confidence) if order.confidence is not None else None,
    )
    reporter.finished()


def _start(ctx: StageContext) -> None:
    row, job = ctx.row, ctx.job
    now = timezone.now()
    with transaction.atomic():
        ctx.reporter.hold()
        row.status = StageStatus.RUNNING
        row.attempt += 1
        row.started_at, row.finished_at = now, None
        row.error = ""
        row.message = ""
        row.save(
            update_fields=["status", "attempt", "started_at", "finished_at", "error", "message"]
        )
        job.enter_stage(row.name)
        job.heartbeat_at = now
        job.processed_rows, job.total_rows = 0, None
        job.progress = min(99, int(ctx.index * 100 / len(STAGES)))
        ctx.reporter.save(
            "stage", "stages", "heartbeat_at", "progress", "processed_rows", "total_rows"
        )
    ctx.reporter.announce(
        "workflow.stage",
        **event_fields(ctx, status="started", message=f"{STAGE_LABELS[row.name]} started"),
    )


def _finish(ctx: StageContext, result: StageResult) -> None:
    """Inside the transaction that holds the job: the stage's writes and its end, together."""
    if result.commit is not None:
        result.commit()
    row = ctx.row
    row.status = result.status
    row.finished_at = timezone.now()
    row.message = result.message
    row.summary = result.summary
    fields = ["status", "finished_at", "message", "summary"]
    if result.output is not None:
        row.output = result.output
        fields.append("output")
    row.save(update_fields=fields)
    ctx.reporter.announce(
        "workflow.stage",
        **event_fields(ctx, status=str(result.status), message=result.message),
    )


def _run_stage(ctx: StageContext, fn: StageFn) -> StageResult | None:
    _start(ctx)
    name = ctx.row.name
    try:
        if name in TRANSACTIONAL:
            with transaction.atomic():
                # the job's row before the order's, as every other path that takes both (a
                # retry, a review, a cancel, the lost-worker check): a stage that saved the
                # order and then reported progress could deadlock with them. Held, it also
                # fences the stage: a newer attempt (this worker was presumed lost) waits,
                # and an attempt resumed before this point makes this one stop, writing nothing
                ctx.reporter.hold()
                result = fn(ctx)
                _finish(ctx, result)
        else:
            result = fn(ctx)
            with transaction.atomic():
                ctx.reporter.hold()
                _finish(ctx, result)
    except (JobFenced, *OUTAGE_ERRORS):
        # not the stage's failure: a newer attempt owns the job, or the database went away
        # (``run_job`` resumes the job once it answers)
        raise
    except StageError as exc:
        _fail(ctx, str(exc))
        return None
    except Exception as exc:
        log.exception("purchase-order stage %s of job %s crashed", name, ctx.job.id)
        _fail(
            ctx,
            f"internal error ({type(exc).__name__}); retry the order, and if it fails again "
            "give the job id to an administrator (the worker log has details)",
        )
        return None
    return result


def _fail(ctx: StageContext, message: str) -> None:
    # a reader's message may quote the document (a header cell with a NUL): the save of the
    # stage refused it, and the order was never marked failed
    message = storable(message)
    row = ctx.row
    with transaction.atomic():
        ctx.reporter.hold()
        row.status = StageStatus.FAILED
        row.finished_at = timezone.now()
        row.error = message
        row.save(update_fields=["status", "finished_at", "error"])
        PurchaseOrder.objects.filter(pk=ctx.order.pk).update(
            status=POStatus.FAILED, updated_at=timezone.now()
        )
        ctx.order.status = POStatus.FAILED
        ctx.reporter.announce("workflow.error", **event_fields(ctx, error=message))
        ctx.reporter.failed(f"Stage '{row.name}' failed: {message}")


def _pause_for_review(ctx: StageContext) -> None:
    """The order waits for an operator: the job is no longer running (nothing to lose), and
    goes on as a new attempt once the order is reviewed."""
    job = ctx.job
    with transaction.atomic():
        if ctx.reporter.hold():
            # cancelled while the stage ran (parsing holds no lock while it reads): the job
            # ends here, and its order with it, instead of waiting for a review that would
            # clear the cancel and go on
            ctx.reporter.cancelled()
            return
        PurchaseOrder.objects.filter(pk=ctx.order.pk).update(
            status=POStatus.NEEDS_REVIEW, updated_at=timezone.now()
        )
        ctx.order.status = POStatus.NEEDS_REVIEW
        job.status = JobStatus.PENDING
        job.enter_stage("needs_review")
        job.heartbeat_at = timezone.now()
        ctx.reporter.save("status", "stage", "stages", "heartbeat_at")
    ctx.reporter.announce(
        "workflow.stage",
        **event_fields(
            ctx,
            stage="needs_review",
            status="waiting",
            message="The order waits for review: " + "; ".join(ctx.order.review_reasons[:3]),
        ),
    )
