"""Reading and validating in a child process, so the writer's process has the GIL to itself.

The child is *spawned* (a fresh interpreter: nothing inherited from a worker that holds
database connections and threads) and imports only the pure pipeline modules, no Django. It
streams the file, validates each row and sends batches (``Chunk``) through a bounded queue, so
memory stays flat however large the file. Measured here: in one process, parsing and validating
(~5 µs a row) and psycopg's ``write_row`` (~5 µs) took turns on one GIL; apart, they overlap.
A ``multiprocessing.Queue``, not a bare pipe: its feeder thread pickles and writes a batch while
the child goes on validating; with a pipe the child waited in ``send`` until the parent had read
the whole batch (bench: new rows fell from ~105k to ~75k rows/s).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import queue
import signal
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .copy_text import CopyBatch
from .readers import FileReadError, open_source
from .shaping import ImportPlan
from .validation import CheckedBatch, RowError

# Rows validated at a time: a run's strings and lists stay in the CPU's cache (measured: 3.3 µs
# a row at 500, 4.1 at 2,000, 5.0 at 5,000); the writer still gets whole batches a chunk.
CHECK_ROWS = 500
# Two batches in flight: one being written, one ready. More buys nothing but memory.
QUEUE_BATCHES = 2
# With no batch size asked for (the default), batches are sized automatically: they start
# small, so the first progress shows at once, and double up to ADAPTIVE_MAX_ROWS rows or
# ADAPTIVE_MAX_BYTES of file, whichever is fewer rows. Each batch costs a transaction, an
# existence probe, a progress write and a cancel check: at 500 rows those were over half the
# time (61k rows/s against 150k at 5,000). The cap keeps a batch well under half a second, so
# a running job still reports at least twice a second. The sizes depend only on the file (its
# size and row count), so a retry cuts the same batches and resumes exactly after its
# checkpoint.
ADAPTIVE_FIRST_ROWS = 500
ADAPTIVE_MAX_ROWS = 5_000
ADAPTIVE_MAX_BYTES = 4 * 1024 * 1024


def batch_sizes(batch_size: int, *, file_bytes: int, total: int) -> Iterator[int]:
    """The size of each batch in turn: ``batch_size`` every time, or with 0 (automatic) a
    ramp from ``ADAPTIVE_FIRST_ROWS`` doubling up to the cap for rows of this file's width."""
    if batch_size > 0:
        while True:
            yield batch_size
    row_bytes = max(file_bytes / max(total, 1), 1.0)
    cap = int(min(ADAPTIVE_MAX_ROWS, max(ADAPTIVE_FIRST_ROWS, ADAPTIVE_MAX_BYTES / row_bytes)))
    size = ADAPTIVE_FIRST_ROWS
    while True:
        yield min(size, cap)
        size *= 2


_CONTEXT = multiprocessing.get_context("spawn")


class RowChecker(Protocol):
    """What a plan's ``checker`` gives: rows to clean columns and row errors, and those
    columns to a ``CopyBatch`` for the writer. Built in the child; pure code, no Django."""

    def __call__(self, numbers: Sequence[int], rows: Sequence[list[str]]) -> CheckedBatch: ...

    def batch_of(self, org: str, checked: CheckedBatch) -> CopyBatch: ...

    def take_skipped(self) -> Mapping[str, int]: ...

    def summary(self) -> Any:
        """What the job learns from the whole file, sent once it is read (picklable; None
        for nothing): ``ValidatorProcess.summary`` after the last chunk."""


class RowPlan(Protocol):
    """How a job's file is checked (``shaping.ImportPlan`` for products, the component
    import's own for components): plain data that travels to the child."""

    def checker(self, header: Sequence[str], expected_rows: int) -> RowChecker: ...


@dataclass
class Chunk:
    rows: int
    last_row: int
    batch: CopyBatch
    errors: list[RowError] = field(default_factory=list)
    # rows a preset's rules skipped, by reason (not products: image rows, variable parents)
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class _End:
    error: str | None = None  # a FileReadError's message
    crash: str | None = None  # any other exception, as a traceback
    summary: Any = None  # the checker's, once the whole file is read


def _die_with_parent() -> Any:
    """Make sure the child never outlives the process that reads its batches.

    A work horse killed with SIGKILL runs no cleanup, and its validator would sit forever in
    ``put`` on a full queue. Linux kills the child with its parent (``PR_SET_PDEATHSIG``);
    elsewhere, and as a second guard, ``put`` gives up once the parent is gone.
    """
    spawner = multiprocessing.parent_process()
    if spawner is None:  # called inline (tests): no parent to watch
        return lambda out, item: out.put(item)
    # The pid the parent had when it spawned us, not ``os.getppid()`` now: a spawned child
    # spends a second importing before it gets here, and a parent killed meanwhile has already
    # handed it to init (or a subreaper), whose pid would then pass every check below. A drill
    # killed horses a moment after their resume and found their validators alive, waiting on
    # a full queue for good.
    parent = spawner.pid
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)

    def put(out: Any, item: object) -> None:
        while True:
            try:
                out.put(item, timeout=1.0)
                return
            except queue.Full:
                if os.getppid() != parent:
                    os._exit(1)

    return put


def _produce(
    path: str,
    filename: str,
    total: int,
    batch_size: int,
    organization_id: int,
    out: Any,
    plan: RowPlan | None = None,
) -> None:
    """The child: file → validated batches → ``out``; always ends with an ``_End``."""
    put = _die_with_parent()
    # Batches keep thousands of rows' lists alive at once, which made the cyclic collector run
    # over and over for nothing (it made validation 40 % slower, measured): nothing here forms
    # a reference cycle, so reference counting frees it all.
    collecting = gc.isenabled()
    gc.disable()
    try:
        source = open_source(Path(path), filename)
        check_batch = (plan or ImportPlan()).checker(source.header, total)
        org = str(organization_id)
        pending: list[CopyBatch] = []
        chunk = Chunk(0, 0, CopyBatch())
        sizes = batch_sizes(batch_size, file_bytes=Path(path).stat().st_size, total=total)
        size = next(sizes)
        for numbers, values in source.batches(min(CHECK_ROWS, size)):
            while values:
                # exactly ``size`` rows a chunk: split a run that crosses the boundary
                need = size - chunk.rows
                head, numbers, head_values, values = (
                    numbers[:need],
                    numbers[need:],
                    values[:need],
                    values[need:],
                )
                checked = check_batch(head, head_values)
                pending.append(check_batch.batch_of(org, checked))
                chunk.errors.extend(checked.errors)
                for reason, count in check_batch.take_skipped().items():
                    chunk.skipped[reason] = chunk.skipped.get(reason, 0) + count
                chunk.rows += len(head_values)
                chunk.last_row = head[-1]
                if chunk.rows == size:
                    chunk.batch = CopyBatch.joined(pending)
                    put(out, chunk)
                    pending, chunk = [], Chunk(0, 0, CopyBatch())
                    size = next(sizes)
        if chunk.rows:
            chunk.batch = CopyBatch.joined(pending)
            put(out, chunk)
        put(out, _End(summary=check_batch.summary()))
    except FileReadError as exc:
        put(out, _End(error=str(exc)))
    except BaseException:
        put(out, _End(crash=traceback.format_exc()))
    finally:
        if collecting:
            gc.enable()


class ValidatorProcess:
    """The parent's handle: iterate ``chunks()``; ``stop()`` always (it is idempotent)."""

    def __init__(
        self,
        *,
        path: Path,
        filename: str,
        total: int,
        batch_size: int,
        organization_id: int,
        plan: RowPlan | None = None,
    ) -> None:
        self._queue = _CONTEXT.Queue(maxsize=QUEUE_BATCHES)
        self._proc = _CONTEXT.Process(
            target=_produce,
            args=(str(path), filename, total, batch_size, organization_id, self._queue, plan),
            name="intake-validator",
            daemon=True,
        )
        # the checker's summary of the whole file, once ``chunks()`` has reached its end
        self.summary: Any = None

    def start(self) -> None:
        self._proc.start()

    def chunks(self) -> Iterator[Chunk]:
        """Validated batches in file order. Raises ``FileReadError`` for a file that turns
        out unreadable part-way, ``RuntimeError`` if the child crashed or died."""
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise RuntimeError(
                        f"the validator process died (exit code {self._proc.exitcode})"
                    )
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    raise FileReadError(item.error)
                if item.crash is not None:
                    raise RuntimeError(f"the validator process failed:\n{item.crash}")
                self.summary = item.summary
                return
            yield item

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
        if self._proc.pid is not None:
            self._proc.join(10)
        self._queue.close()
        self._queue.cancel_join_thread()  # do not block on batches nobody will read
