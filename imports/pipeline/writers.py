"""The writer: the only pipeline code that touches the database.

An upsert batch (the default mode) is COPYed into a session temp table, as the COPY text lines
the validator built (``copy_text``), and applied with one MERGE: one probe of the unique
``(organization_id, sku)`` index per row, an insert for each new row and an update only for rows
whose values really changed. In ``create`` and ``update`` mode (and before PostgreSQL 17, whose
MERGE cannot say what it did to each row) the batch first asks which of its SKUs exist; new
rows are COPYed straight into the products table and existing ones applied from the temp table
with an UPDATE. Either way unchanged rows cost no write, nothing burns sequence values, and
created / updated / unchanged are exact counts.

A catalogue that is empty when the job starts (a first import) COPYs straight into the products
table, the physical limit for getting rows in: every SKU of the file is new, since the
validator already refused repeats. Should another writer add one of
those SKUs meanwhile, the unique index refuses the batch, and it and every later batch take the
MERGE (or probing) path.

Every batch runs in its own transaction (or savepoint, when the job is all-or-nothing). A database
error on a batch (a constraint only the database knows, or a concurrent import of the same SKU)
rolls that batch back and replays it row by row, so every failing row gets its own row-numbered
error and nothing already stored changes. A lost connection, a server restart or a timeout is
not about any row: it goes up to the caller (``OUTAGE_ERRORS``), which redoes the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import dataclass, field

import psycopg
from django.db import DatabaseError, connection, transaction

from ..outages import OUTAGE_ERRORS
from .copy_text import CopyBatch, values_of
from .validation import FIELDS, RowError

COLUMNS = FIELDS  # the products table's importable columns, in file-field order
_DATA = COLUMNS[1:]
_STAGE = "intake_product_stage"
# the same columns as the products COPY, so one line format serves both (the products'
# timestamps are the table's defaults, now(); an update sets updated_at itself)
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    organization_id bigint NOT NULL,
    sku text NOT NULL, name text NOT NULL, description text NOT NULL, price numeric NOT NULL,
    currency text NOT NULL, quantity bigint NOT NULL, barcode text NOT NULL,
    category text NOT NULL, brand text NOT NULL, status text NOT NULL
) ON COMMIT DELETE ROWS
"""
_LINE_COLUMNS = f"organization_id, {', '.join(COLUMNS)}"
_COPY_STAGE = f"COPY {_STAGE} ({_LINE_COLUMNS}) FROM STDIN"
_COPY_PRODUCTS = f"COPY imports_product ({_LINE_COLUMNS}) FROM STDIN"


# An upsert batch into a catalogue that has products: the whole batch is staged and one MERGE
# probes the unique index once per row, inserts the new rows and updates the changed ones.
# Before, an existence probe (an ``unnest`` join) ran first and the UPDATE probed the index
# again: 300k rows into a catalogue that had them took 4.9 s of the writer's time, 1.4 s of it
# the probe; with MERGE 3.0 s (unchanged rows 3.1 → 1.35 s). ``merge_action()`` in RETURNING
# needs PostgreSQL 17; older servers keep the probing path.
# An existing product takes the columns the file has, and only those (``updated``): a price
# file of sku, name and price wrote every other field's default over the product (its
# description, barcode, category and brand emptied, its quantity 0). New products take the
# defaults. Only rows whose values really change are written.
def _statements(updated: tuple[str, ...]) -> tuple[str, str]:
    """The UPDATE and the MERGE of a stage of products that sets the ``updated`` columns."""
    p_cols, s_cols = (", ".join(table + c for c in updated) for table in ("p.", "s."))
    changed = f"ROW({p_cols}) IS DISTINCT FROM ROW({s_cols})"
    assign = f"{', '.join(f'{c} = s.{c}' for c in updated)}, updated_at = now()"
    update = f"""
UPDATE imports_product p SET {assign}
FROM {_STAGE} s
WHERE p.organization_id = s.organization_id AND p.sku = s.sku
  AND {changed}
"""
    merge = f"""
WITH merged AS (
  MERGE INTO imports_product p USING {_STAGE} s
  ON p.organization_id = s.organization_id AND p.sku = s.sku
  WHEN MATCHED AND {changed} THEN UPDATE SET {assign}
  WHEN NOT MATCHED
    THEN INSERT ({_LINE_COLUMNS}) VALUES ({", ".join("s." + c for c in _LINE_COLUMNS.split(", "))})
  RETURNING merge_action() AS action
)
SELECT count(*) FILTER (WHERE action = 'INSERT'), count(*) FILTER (WHERE action = 'UPDATE')
FROM merged
"""
    return update, merge


_UPDATE, _MERGE = _statements(_DATA)
_MERGE_SINCE = 170000  # PostgreSQL 17: MERGE ... RETURNING merge_action()
# The organization comes in as an array beside the SKUs, not as a constant: with a constant the
# planner trusts its statistics for that organization (often "one row" for a catalogue that is
# growing under us) and scans all its products per batch. As a join key it can only probe.
_ANY_PRODUCT = "SELECT EXISTS (SELECT 1 FROM imports_product WHERE organization_id = %s)"
_EXISTING = """
SELECT s.sku FROM unnest(%s::bigint[], %s::text[]) AS s(organization_id, sku)
JOIN imports_product p ON p.organization_id = s.organization_id AND p.sku = s.sku
"""


@dataclass
class BatchResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.errors.extend(other.errors)


# the writer talks to psycopg's cursor directly (COPY), whose errors Django does not wrap
_DB_ERRORS = (DatabaseError, psycopg.Error)


class _DryRunRollback(Exception):
    pass


class BatchWriter:
    """What every kind's writer shares: one organization's batches of clean rows (``CopyBatch``)
    applied on this thread's connection, each in its own transaction (or savepoint, with
    ``atomic``), and a batch the database refuses replayed row by row so that each failing row
    gets its own row error and the good ones still go in.

    Use from one thread; call ``open()`` first and ``close()`` last. With ``atomic`` the whole
    run is one transaction that ``close(commit=False)`` rolls back. A kind gives its ``stage``
    table (``create_stage``), ``any_row`` (whether this is a first load: ``all_new``) and
    ``_apply`` (one batch); ``open`` sets the session up the same way for every kind."""

    # a kind's session temp table (``ON COMMIT DELETE ROWS``), its CREATE, and a query whether
    # the organization has any row of the kind yet (``%s``: the organization)
    stage = ""
    create_stage = ""
    any_row = ""

    def __init__(self, *, organization_id: int, atomic: bool = False) -> None:
        self.org = organization_id
        self.atomic = atomic
        self._outer: transaction.Atomic | None = None
        # every row still to come is new: the organization had none at the start and nobody
        # else has written one of its keys since (the unique index tells us if they do)
        self.all_new = False

    def open(self) -> None:
        with connection.cursor() as cur:
            # The organization is a column of the stage, not a constant in the joins: with a
            # constant, an organization that is new since the last ANALYZE is estimated at one
            # row, and the planner scans all of its rows for every staged row (batches got
            # slower as the import grew, 40 s each at 65k rows). As a join key it can only probe
            # the kind's unique index.
            cur.execute(self.create_stage)
            # Each staged row probes that index: a nested loop over index probes is always the
            # plan we want, never a hash or a scan of the whole catalogue, whatever the (often
            # stale: the table is growing under us) statistics say. With an empty table's
            # statistics the planner scanned the products table once per staged row (1.3k
            # rows/s). The connection is the writer thread's own and is closed after the job.
            for knob in ("enable_hashjoin", "enable_mergejoin", "enable_seqscan", "jit"):
                cur.execute(f"SET {knob} = off")
            # One commit per batch; waiting for each WAL flush cost a third of the writer's
            # time here. A database crash can lose at most the last few hundred ms of commits,
            # never consistency: a batch's rows, its counts, its row errors and its checkpoint
            # commit in one transaction, so they are lost together, and the resume redoes
            # those batches from the checkpoint that survived (upserts are idempotent).
            # Fencing holds too: a newer attempt's claim commits on another connection,
            # flushed, and a flush covers every WAL record before it, this writer's included.
            cur.execute("SET synchronous_commit = off")
            cur.execute(self.any_row, [self.org])
            self.all_new = not cur.fetchone()[0]
            self._prepare(cur)
        if self.atomic:
            self._outer = transaction.atomic()
            self._outer.__enter__()

    def close(self, *, commit: bool) -> None:
        if self._outer is not None:
            if not commit:
                transaction.set_rollback(True)
            self._outer.__exit__(None, None, None)
            self._outer = None

    def abort(self) -> None:
        """Roll back and release after an unexpected error."""
        if self._outer is not None:
            transaction.set_rollback(True)
            with contextlib.suppress(Exception):
                self._outer.__exit__(None, None, None)
            self._outer = None

    def write(self, batch: CopyBatch) -> BatchResult:
        if not len(batch):
            return BatchResult()
        try:
            return self._apply(batch)
        except OUTAGE_ERRORS:
            raise  # never a row error: every row would "fail" and the batch would be skipped
        except _DB_ERRORS as exc:
            if self._again(exc):
                return self.write(batch)
        # Replay row by row so each failing row is named; the good ones still go in. A batch
        # of one row too: raising here failed the whole job over one row (the last batch of
        # 5,001 rows), and its retry failed on it again.
        result = BatchResult()
        for row, key, line in zip(batch.row_numbers, batch.keys, batch.lines, strict=True):
            try:
                result.add(self._apply(CopyBatch([row], [key], line), replay=True))
            except OUTAGE_ERRORS:
                raise
            except _DB_ERRORS as exc:
                reason = str(exc).strip().splitlines()[0]
                result.errors.append(
                    RowError(
                        row,
                        f"Row {row}: the database refused this row ({reason})",
                        self._values(line),
                    )
                )
        return result

    def _prepare(self, cur) -> None:
        """The kind's own session set-up, after the shared one (``open``)."""

    def _apply(self, batch: CopyBatch, *, replay: bool = False) -> BatchResult:
        """Write ``batch`` in a savepoint. ``replay``: it is one row of a batch that failed,
        whose other rows may still be in the stage."""
        raise NotImplementedError

    def _again(self, exc: Exception) -> bool:
        """Whether a refused batch is to be tried again whole: a first load met a key that
        exists after all (another writer's, or a repeat across batches), so every batch from
        now on probes."""
        if isinstance(exc, psycopg.errors.UniqueViolation) and self.all_new:
            self.all_new = False
            return True
        return False

    def _clear_stage(self, cur: psycopg.Cursor, *, replay: bool) -> None:
        # ON COMMIT DELETE ROWS empties the stage after each batch's commit; an all-or-nothing
        # job commits only at the end, and a replayed row follows the batch's earlier rows
        if self.atomic:
            cur.execute(f"TRUNCATE {self.stage}")
        elif replay:
            cur.execute(f"DELETE FROM {self.stage}")  # a few rows: cheaper than a new file

    def _values(self, line: str) -> list[str]:
        """A COPY line's values, for a row error."""
        return values_of(line)


class ProductWriter(BatchWriter):
    """Applies batches of clean products for one organization (see ``BatchWriter``); with
    ``dry_run`` every batch is rolled back after its counts are taken."""

    stage = _STAGE
    create_stage = _CREATE_STAGE
    any_row = _ANY_PRODUCT

    def __init__(
        self,
        *,
        organization_id: int,
        mode: str,
        dry_run: bool,
        atomic: bool,
        fields: Collection[str] | None = None,
    ) -> None:
        """``fields``: the product fields the file gives (None: all of them), which are what
        an existing product takes."""
        super().__init__(organization_id=organization_id, atomic=atomic)
        self.mode = mode
        self.dry_run = dry_run
        self.merge = False  # upserts by one MERGE a batch (PostgreSQL 17 and later)
        updated = _DATA if fields is None else tuple(c for c in _DATA if c in fields)
        self.update_sql, self.merge_sql = (
            (_UPDATE, _MERGE) if updated == _DATA else _statements(updated)
        )

    def _prepare(self, cur) -> None:
        self.merge = self.mode == "upsert" and connection.pg_version >= _MERGE_SINCE

    def _apply(self, batch: CopyBatch, *, replay: bool = False) -> BatchResult:
        """Write ``batch`` in a savepoint. With ``replay`` (one row of a batch that failed),
        the rows before it are still in the stage: it is emptied first, or each row would
        apply all of those again."""
        result = BatchResult()
        try:
            with transaction.atomic(), connection.cursor() as wrapper:
                cur = wrapper.cursor
                if self.merge and not self.all_new:
                    result = self._merge(cur, batch, replay=replay)
                    if self.dry_run:
                        raise _DryRunRollback
                    return result
                existing: set[str] = set()
                if not self.all_new:
                    cur.execute(_EXISTING, [[self.org] * len(batch), batch.keys])
                    existing = {row[0] for row in cur.fetchall()}
                new, old = batch, CopyBatch()
                if existing:
                    flags = [sku in existing for sku in batch.keys]
                    new = batch.subset([i for i, found in enumerate(flags) if not found])
                    old = batch.subset([i for i, found in enumerate(flags) if found])
                if self.mode == "create":
                    result.errors = _refused(old, "already exists")
                    old = CopyBatch()
                elif self.mode == "update":
                    result.errors = _refused(
                        new, "does not exist (update mode only changes existing products)"
                    )
                    new = CopyBatch()
                if len(new):
                    with cur.copy(_COPY_PRODUCTS) as copy:
                        copy.write(new.text)
                    result.created = len(new)
                if len(old):
                    self._clear_stage(cur, replay=replay)
                    with cur.copy(_COPY_STAGE) as copy:
                        copy.write(old.text)
                    cur.execute(self.update_sql)
                    result.updated = cur.rowcount
                result.unchanged = len(old) - result.updated
                if self.dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass
        return result

    def _merge(self, cur: psycopg.Cursor, batch: CopyBatch, *, replay: bool) -> BatchResult:
        self._clear_stage(cur, replay=replay)
        with cur.copy(_COPY_STAGE) as copy:
            copy.write(batch.text)
        cur.execute(self.merge_sql)
        created, updated = cur.fetchone()
        return BatchResult(
            created=created, updated=updated, unchanged=len(batch) - created - updated
        )


def _refused(batch: CopyBatch, why: str) -> list[RowError]:
    return [
        RowError(row, f"Row {row}: SKU '{sku}' {why}", values_of(line))
        for row, sku, line in zip(batch.row_numbers, batch.keys, batch.lines, strict=True)
    ]
