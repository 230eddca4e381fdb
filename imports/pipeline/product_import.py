"""The product-import pipeline: read → validate → write, overlapped.

A child process reads and validates (``validator_process``); writer threads COPY and upsert
(``Writers``: a setting says how many, each on its own connection); this thread passes
batches from one to the other and reports progress. Bounded queues between them keep memory
flat, and PostgreSQL works on batches while the child prepares the next, so both cores are busy.

Two writers: the database's share of a batch (COPY, index inserts) is most of an import's time
for a table with several indexes, and one backend does it on one core. With two, two batches
go in at once while their commits stay in file order (``CommitTurns``). Measured on two cores,
1M components (four B-trees a row): the ``importing`` stage took 12.5-14.8 s (median 13.3, 4
runs) against 13.6-16.7 s (median 15.1, 4 runs) with one writer. Products (two B-trees) are the
validator's more than the database's: one writer (a second made them 2-11 % slower).
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
from typing import Any

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
    seq: int = 0  # the batch's place in the file (``Writers``)


# reports a written batch (ProgressReporter.advance); returns whether cancel was asked
BatchReport = Callable[[Chunk, BatchResult], bool]
# after an outage, on the new connection: the job's counts as committed, and whether the
# chunk's own batch was (its COMMIT reached the server before the connection was cut)
BatchRecover = Callable[[Chunk], bool]


class _Aborted(Exception):
    """Another writer thread failed: this one stops waiting for its turn to commit."""


class CommitTurns:
    """Batches commit in the order the file gives them, whichever writer thread wrote them.

    A thread writes its batch (the long part: COPY and index inserts) as soon as it has it,
    then waits here for every earlier batch to commit before it reports and commits its own.
    So the checkpoint only ever moves forward over batches that are all in, as with one
    writer: a worker killed at any moment loses only uncommitted batches after it."""

    def __init__(self) -> None:
        self._next = 0
        self._cond = threading.Condition()
        self._aborted = False
        # a report answered that the job is cancelled: the batches after it are not committed
        self.cancelled = False

    def wait(self, seq: int) -> None:
        with self._cond:
            while self._next != seq:
                if self._aborted:
                    raise _Aborted
                self._cond.wait(0.5)

    def passed(self, seq: int, *, cancelled: bool = False) -> None:
        with self._cond:
            self._next = seq + 1
            self.cancelled |= cancelled
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()


@dataclass
class _Job:
    seq: int
    chunk: Chunk


class WriterThread(threading.Thread):
    """Writes batches on its own connection. With ``report``, each batch is reported inside
    its own transaction: the rows, the job's counts, its row errors and the checkpoint
    commit together (and only while the job is still at this attempt), so a worker killed
    at any moment can neither import a batch twice nor lose its counts."""

    def __init__(
        self,
        writer: BatchWriter,
        *,
        inbox: queue.Queue[object],
        outbox: queue.Queue[ChunkResult],
        turns: CommitTurns,
        report: BatchReport | None = None,
        recover: BatchRecover | None = None,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.writer = writer
        self.report = report
        self.recover = recover
        self.inbox = inbox
        self.outbox = outbox
        self.turns = turns
        self.error: BaseException | None = None
        self.commit = True

    def run(self) -> None:
        try:
            self.writer.open()
            while True:
                item = self.inbox.get()
                if item is _DONE:
                    break
                assert isinstance(item, _Job)
                self.outbox.put(self._write(item))
            self.writer.close(commit=self.commit)
        except _Aborted:
            self.writer.abort()
        except BaseException as exc:  # re-raised in the reading thread
            self.error = exc
            self.turns.abort()
            self.writer.abort()
        finally:
            connection.close()

    def _write(self, item: _Job) -> ChunkResult:
        chunk = item.chunk
        if self.report is None:
            # all-or-nothing or dry run (one writer, one transaction): an outage loses the
            # whole transaction, so it goes up and the attempt starts over
            return ChunkResult(chunk, self.writer.write(chunk.batch), seq=item.seq)
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
                    if self.recover is not None:
                        self.turns.wait(item.seq)
                        if self.recover(chunk):
                            self.turns.passed(item.seq)
                            return ChunkResult(chunk, BatchResult(), reported=True, seq=item.seq)
                with transaction.atomic():
                    result = self.writer.write(chunk.batch)
                    self.turns.wait(item.seq)
                    if self.turns.cancelled:
                        # written beside the batch whose report saw the cancel: rolled back,
                        # as if it had not been read yet (a retry goes on from the checkpoint)
                        transaction.set_rollback(True)
                        cancelled, result = True, BatchResult()
                    else:
                        cancelled = self.report(chunk, result)
                self.turns.passed(item.seq, cancelled=cancelled)
                return ChunkResult(chunk, result, reported=True, cancelled=cancelled, seq=item.seq)
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


class Writers:
    """The writer threads of one job, each with its own connection and ``BatchWriter``, taking
    batches from one queue in file order.

    With several, PostgreSQL inserts two batches' rows and index entries at once on two
    backends, while the commits stay in file order (``CommitTurns``). Two batches that share
    a key are never in flight together (``keys_clash``: the reading thread lets the batches in
    flight commit first): the later one could otherwise hold the key in the unique index while
    the earlier waits on it, and the later waits for the earlier's turn."""

    def __init__(
        self,
        new_writer: Callable[[], BatchWriter],
        count: int,
        *,
        report: BatchReport | None = None,
        recover: BatchRecover | None = None,
    ) -> None:
        self.inbox: queue.Queue[object] = queue.Queue(maxsize=2)
        self.outbox: queue.Queue[ChunkResult] = queue.Queue()
        self.turns = CommitTurns()
        self.threads = [
            WriterThread(
                new_writer(),
                inbox=self.inbox,
                outbox=self.outbox,
                turns=self.turns,
                report=report,
                recover=recover,
                name=f"intake-writer-{n}",
            )
            for n in range(count)
        ]
        self._seq = 0
        # keys of the batches submitted and not yet handed back, by sequence number
        self._keys: dict[int, frozenset[str]] = {}

    @property
    def error(self) -> BaseException | None:
        return next((t.error for t in self.threads if t.error is not None), None)

    @property
    def commit(self) -> bool:
        return all(t.commit for t in self.threads)

    @commit.setter
    def commit(self, value: bool) -> None:
        for t in self.threads:
            t.commit = value

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def is_alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def keys_clash(self, chunk: Chunk) -> bool:
        """Whether ``chunk`` shares a key with a batch still in flight (only matters with
        more than one thread); records its keys for the batches after it."""
        if len(self.threads) < 2:
            return False
        keys = frozenset(map(str.upper, chunk.batch.keys))
        clash = any(not keys.isdisjoint(other) for other in self._keys.values())
        self._keys[self._seq] = keys
        return clash

    def returned(self, done: ChunkResult) -> None:
        self._keys.pop(done.seq, None)

    def submit(self, chunk: Chunk) -> None:
        item = _Job(self._seq, chunk)
        self._seq += 1
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.inbox.put(item, timeout=0.5)
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
        new_writer=lambda: ProductWriter(
            organization_id=job.organization_id,
            mode=job.mode,
            dry_run=job.dry_run,
            atomic=job.atomic,
            # a preset's shaping fills fields from other columns: its export's every field
            fields=None if plan.preset else set(header.columns),
        ),
        writers=settings.IMPORT_WRITERS,
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
    new_writer: Callable[[], BatchWriter],
    writers: int = 1,
    checkpointed: bool,
    settle: Callable[[Any], None] | None = None,
) -> None:
    """The job's file (its header checked, ``total`` rows counted) through the validator
    process, this thread and ``writers`` writer threads to the job's end: finished, cancelled
    or failed.

    Every kind of import runs on this: ``plan`` checks the rows in the child, the
    ``new_writer()`` of each writer thread applies them (one thread when not ``checkpointed``:
    an all-or-nothing job or a dry run is one transaction). With ``checkpointed``, each batch
    is reported in its own transaction with its checkpoint (a retry goes on after it);
    ``settle`` runs once the batches are done (or stopped), before the job's terminal report,
    with the checker's summary of the whole file (None unless the validator read it all)."""
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

    threads = Writers(
        new_writer,
        # one transaction for the whole job (all-or-nothing, dry run) is one connection's
        writers if checkpointed else 1,
        report=report if checkpointed else None,
        recover=recover if checkpointed else None,
    )
    validator.start()  # it parses while the writer connects
    try:
        _pipeline(job, reporter, threads, validator, report, settle)
    except (FileReadError, WriterStuck) as exc:  # batches before it are kept
        if settle is not None:
            settle(None)
        reporter.failed(str(exc))
    finally:
        validator.stop()


def _pipeline(
    job: ImportJob,
    reporter: ProgressReporter,
    writer: Writers,
    validator: ValidatorProcess,
    report: BatchReport,
    settle: Callable[[Any], None] | None = None,
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
            writer.returned(done)
            for reason, count in done.chunk.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
            cancelled = done.cancelled if done.reported else report(done.chunk, done.result)
            if cancelled:
                state["cancelled"] = True

    def submit(chunk: Chunk) -> None:
        if writer.keys_clash(chunk):
            drain(wait=True)  # the batches it repeats keys of commit first
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
        settle(validator.summary)
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


def _stop(writers: Writers) -> None:
    deadline = time.monotonic() + settings.IMPORT_WRITER_TIMEOUT_SECONDS
    sent = 0  # one end mark for each thread
    while sent < len(writers.threads) and writers.is_alive() and time.monotonic() < deadline:
        try:
            writers.inbox.put(_DONE, timeout=0.5)
            sent += 1
        except queue.Full:
            # a writer died or is busy; make room so the others can see the end
            with contextlib.suppress(queue.Empty):
                if writers.inbox.get_nowait() is _DONE:
                    sent -= 1
                else:
                    # A batch dropped: its turn never comes. The batch whose turn it is still
                    # commits; the later ones roll back instead of waiting for good.
                    writers.turns.abort()
    # Bounded: the writer's statements have their own timeout (DB_WORKER_STATEMENT_TIMEOUT_MS),
    # so one that is still busy after this is stuck outside the database. They are daemon
    # threads: the work horse exits without them, and their connections close with the process.
    for thread in writers.threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if writers.is_alive():
        raise WriterStuck(_STUCK)
