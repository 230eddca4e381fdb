"""The product-import pipeline: read → validate → write, overlapped.

A child process reads and validates (``validator_process``); a writer thread COPYs and upserts;
this thread passes batches from one to the other and reports progress. Bounded queues between
them keep memory flat, and PostgreSQL works on one batch while the child prepares the next, so
both cores are busy.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from ..models import ImportJob
from ..outages import OUTAGE_ERRORS, backoff_delays, drop_connection
from ..progress import ProgressReporter
from .mapping import MappingError
from .readers import FileReadError, open_source
from .shaping import ImportPlan
from .validation import HeaderError
from .validator_process import Chunk, RowPlan, ValidatorProcess
from .writers import BatchResult, BatchWriter, ProductWriter

_DONE = object()
log = logging.getLogger(__name__)
_STUCK = (
    "The database writer did not finish a batch in time; the batches before it are kept. "
    "Retry the job to go on from there."
)


class WriterStuck(RuntimeError):
    """The writer thread did not answer within ``IMPORT_WRITER_TIMEOUT_SECONDS``."""


@dataclass
class ChunkResult:
    chunk: Chunk
    result: BatchResult
    reported: bool = False  # already reported, in the batch's own transaction
    cancelled: bool = False  # what that report answered


# reports a written batch (ProgressReporter.advance); returns whether cancel was asked
BatchReport = Callable[[Chunk, BatchResult], bool]
# after an outage, on the new connection: the job's counts as committed, and whether the
# chunk's own batch was (its COMMIT reached the server before the connection was cut)
BatchRecover = Callable[[Chunk], bool]


class WriterThread(threading.Thread):
    """Writes batches on its own connection. With ``report``, each batch is reported inside
    its own transaction: the products, the job's counts, its row errors and the checkpoint
    commit together (and only while the job is still at this attempt), so a worker killed
    at any moment can neither import a batch twice nor lose its counts."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        report: BatchReport | None = None,
        recover: BatchRecover | None = None,
    ) -> None:
        super().__init__(name="intake-writer", daemon=True)
        self.writer = writer
        self.report = report
        self.recover = recover
        self.inbox: queue.Queue[object] = queue.Queue(maxsize=2)
        self.outbox: queue.Queue[ChunkResult] = queue.Queue()
        self.error: BaseException | None = None
        self.commit = True
        self.opened = threading.Event()

    def run(self) -> None:
        try:
            self.writer.open()
            self.opened.set()
            while True:
                item = self.inbox.get()
                if item is _DONE:
                    break
                assert isinstance(item, Chunk)
                self.outbox.put(self._write(item))
            self.writer.close(commit=self.commit)
        except BaseException as exc:  # re-raised in the reading thread
            self.error = exc
            self.writer.abort()
        finally:
            self.opened.set()
            connection.close()

    def _write(self, chunk: Chunk) -> ChunkResult:
        if self.report is None:
            # all-or-nothing or dry run: an outage loses the whole transaction, so it goes
            # up and the attempt starts over
            return ChunkResult(chunk, self.writer.write(chunk.batch))
        delays = backoff_delays()
        reopen = False
        while True:
            try:
                if reopen:
                    # a new connection's session needs the stage table and settings again
                    self.writer.open()
                    reopen = False
                    # An outage at COMMIT leaves it unknown whether the batch went in, and
                    # the job object has counted it either way: the database says both.
                    if self.recover is not None and self.recover(chunk):
                        return ChunkResult(chunk, BatchResult(), reported=True)
                with transaction.atomic():
                    result = self.writer.write(chunk.batch)
                    cancelled = self.report(chunk, result)
                return ChunkResult(chunk, result, reported=True, cancelled=cancelled)
            except OUTAGE_ERRORS as exc:
                # the batch and its checkpoint went in together or not at all: redo it unless
                # ``recover`` finds it committed
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning(
                    "batch ending at row %s: database outage (%s); again in %.1f s",
                    chunk.last_row,
                    exc,
                    delay,
                )
                drop_connection()
                time.sleep(delay)
                reopen = True

    def submit(self, chunk: Chunk) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.inbox.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue


def run_product_import(job: ImportJob, reporter: ProgressReporter) -> None:
    # in the "reading" stage from the start (jobs.FIRST_STAGES)
    plan = ImportPlan.of(job.options)
    try:
        source = open_source(Path(job.file.path), job.original_filename)
        header = plan.header_map(source.header)
    except (FileReadError, HeaderError, MappingError) as exc:
        reporter.failed(str(exc))
        return
    if header.unknown and not plan.preset:  # a preset leaves its system's other columns out
        reporter.warn(f"Unknown columns ignored: {', '.join(header.unknown)}")
    try:
        total = source.count_rows()
    except FileReadError as exc:
        reporter.failed(str(exc))
        return
    if total == 0:
        reporter.failed("File has a header row but no data rows.")
        return

    reporter.stage("validating" if job.dry_run else "importing", total_rows=total)
    run_pipeline(
        job,
        reporter,
        plan=plan,
        total=total,
        batch_size=job.batch_size,
        writer=ProductWriter(
            organization_id=job.organization_id,
            mode=job.mode,
            dry_run=job.dry_run,
            atomic=job.atomic,
        ),
        # Only batches that stay committed move the checkpoint, and those are reported in
        # their own transaction; an all-or-nothing job's or a dry run's are reported afterwards.
        checkpointed=not (job.atomic or job.dry_run),
    )


def run_pipeline(
    job: ImportJob,
    reporter: ProgressReporter,
    *,
    plan: RowPlan,
    total: int,
    batch_size: int,
    writer: BatchWriter,
    checkpointed: bool,
    settle: Callable[[], None] | None = None,
) -> None:
    """The job's file (its header checked, ``total`` rows counted) through the validator
    process, this thread and a writer thread to the job's end: finished, cancelled or failed.

    Every kind of import runs on this: ``plan`` checks the rows in the child, ``writer``
    applies them. With ``checkpointed``, each batch is reported in its own transaction with
    its checkpoint (a retry goes on after it); ``settle`` runs once the batches are done (or
    stopped), before the job's terminal report."""
    if job.checkpoint_row:
        reporter.warn(
            f"Attempt {job.attempt} goes on after row {job.checkpoint_row}: the rows up to it "
            "were imported by an earlier attempt."
        )
    validator = ValidatorProcess(
        path=Path(job.file.path),
        filename=job.original_filename,
        total=total,
        batch_size=batch_size,
        organization_id=job.organization_id,
        plan=plan,
    )

    def report(chunk: Chunk, result: BatchResult) -> bool:
        return reporter.advance(
            chunk.rows,
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
            errors=sorted([*chunk.errors, *result.errors], key=lambda e: e.row_number),
            checkpoint_row=chunk.last_row if checkpointed else None,
        )

    def recover(chunk: Chunk) -> bool:
        reporter.reload_counts()
        return (reporter.job.checkpoint_row or 0) >= chunk.last_row

    thread = WriterThread(
        writer, report=report if checkpointed else None, recover=recover if checkpointed else None
    )
    validator.start()  # it parses while the writer connects
    try:
        _pipeline(job, reporter, thread, validator, report, settle)
    except (FileReadError, WriterStuck) as exc:  # batches before it are kept
        if settle is not None:
            settle()
        reporter.failed(str(exc))
    finally:
        validator.stop()


def _pipeline(
    job: ImportJob,
    reporter: ProgressReporter,
    writer: WriterThread,
    validator: ValidatorProcess,
    report: BatchReport,
    settle: Callable[[], None] | None = None,
) -> None:
    writer.start()
    state = {"submitted": 0, "received": 0, "cancelled": False}
    skipped: dict[str, int] = {}
    # A retry goes on after the batches an earlier attempt committed. The validator still
    # reads those rows (so a later row's SKU is still checked against theirs); their chunks,
    # the same ones as then (same file, same batch size), are neither written nor counted.
    resume_after = job.checkpoint_row

    def drain(*, wait: bool) -> None:
        """Report what the writer has finished; with ``wait``, everything submitted so far."""
        waiting_since = time.monotonic()
        while state["received"] < state["submitted"]:
            try:
                done = writer.outbox.get(timeout=0.2) if wait else writer.outbox.get_nowait()
            except queue.Empty:
                if writer.error is not None:
                    raise writer.error
                if wait:
                    if time.monotonic() - waiting_since > settings.IMPORT_WRITER_TIMEOUT_SECONDS:
                        raise WriterStuck(_STUCK)
                    continue
                return
            waiting_since = time.monotonic()
            state["received"] += 1
            for reason, count in done.chunk.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
            cancelled = done.cancelled if done.reported else report(done.chunk, done.result)
            if cancelled:
                state["cancelled"] = True

    def submit(chunk: Chunk) -> None:
        writer.submit(chunk)
        state["submitted"] += 1
        drain(wait=False)

    try:
        for chunk in validator.chunks():
            if chunk.last_row <= resume_after:
                continue
            submit(chunk)
            if state["cancelled"]:
                break
        drain(wait=True)
    except BaseException:
        writer.commit = False
        _stop(writer)
        raise

    cancelled = state["cancelled"]
    all_or_nothing_failed = job.atomic and job.error_count > 0
    writer.commit = not (cancelled or all_or_nothing_failed)
    _stop(writer)
    if writer.error is not None:
        raise writer.error

    if settle is not None:
        settle()
    if cancelled:
        reporter.cancelled()
    elif all_or_nothing_failed:
        rows = "row has" if job.error_count == 1 else "rows have"
        reporter.failed(
            f"{job.error_count} {rows} errors, so nothing was imported "
            "(the job is all-or-nothing). Fix the rows listed and upload the file again."
        )
    else:
        if skipped:
            reporter.warn(
                "Skipped, not products: "
                + ", ".join(f"{count:,} {reason}" for reason, count in skipped.items())
                + "."
            )
        reporter.finished(skipped=sum(skipped.values()))


def _stop(writer: WriterThread) -> None:
    while writer.is_alive():
        try:
            writer.inbox.put(_DONE, timeout=0.5)
            break
        except queue.Full:
            # the writer died or is busy; make room so it can see the end
            with contextlib.suppress(queue.Empty):
                writer.inbox.get_nowait()
    # Bounded: the writer's statements have their own timeout (DB_WORKER_STATEMENT_TIMEOUT_MS),
    # so one that is still busy after this is stuck outside the database. It is a daemon
    # thread: the work horse exits without it, and its connection closes with the process.
    writer.join(settings.IMPORT_WRITER_TIMEOUT_SECONDS)
    if writer.is_alive():
        raise WriterStuck(_STUCK)
