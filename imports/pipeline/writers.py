"""The writer: the only pipeline code that touches the database.

Each batch first asks which of its SKUs already exist (one probe of the unique
``(organization_id, sku)`` index per row). New rows are COPYed straight into the products table,
the physical limit for getting rows in, as the COPY text lines the validator built
(``copy_text``). Existing rows are COPYed into a
session temp table and applied with one UPDATE that touches only rows whose values really
changed. So unchanged rows cost no write, nothing burns sequence values, and created / updated /
unchanged are exact counts.

A catalogue that is empty when the job starts (a first import) skips the probe: every SKU of
the file is new, since the validator already refused repeats. Should another writer add one of
those SKUs meanwhile, the unique index refuses the batch, and it and every later batch take the
probing path.

Every batch runs in its own transaction (or savepoint, when the job is all-or-nothing). A database
error on a batch (a constraint only the database knows, or a concurrent import of the same SKU)
rolls that batch back and replays it row by row, so every failing row gets its own row-numbered
error and nothing already stored changes. A lost connection, a server restart or a timeout is
not about any row: it goes up to the caller (``OUTAGE_ERRORS``), which redoes the whole batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import psycopg
from django.db import DatabaseError, connection, transaction

from ..outages import OUTAGE_ERRORS
from .copy_text import ProductBatch, values_of
from .validation import FIELDS, RowError

COLUMNS = FIELDS  # the products table's importable columns, in file-field order
_DATA = COLUMNS[1:]
_STAGE = "intake_product_stage"
# the same columns as the products COPY, so one line format serves both (the stage's
# timestamps are not used: an update sets updated_at itself)
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    organization_id bigint NOT NULL,
    sku text NOT NULL, name text NOT NULL, description text NOT NULL, price numeric NOT NULL,
    currency text NOT NULL, quantity bigint NOT NULL, barcode text NOT NULL,
    category text NOT NULL, brand text NOT NULL, status text NOT NULL,
    created_at timestamptz, updated_at timestamptz
) ON COMMIT DELETE ROWS
"""
_LINE_COLUMNS = f"organization_id, {', '.join(COLUMNS)}, created_at, updated_at"
_COPY_STAGE = f"COPY {_STAGE} ({_LINE_COLUMNS}) FROM STDIN"
_UPDATE = f"""
UPDATE imports_product p SET {", ".join(f"{c} = s.{c}" for c in _DATA)}, updated_at = now()
FROM {_STAGE} s
WHERE p.organization_id = s.organization_id AND p.sku = s.sku
  AND ({", ".join("p." + c for c in _DATA)}) IS DISTINCT FROM ({", ".join("s." + c for c in _DATA)})
"""
_COPY_PRODUCTS = f"COPY imports_product ({_LINE_COLUMNS}) FROM STDIN"
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


class ProductWriter:
    """Applies batches of clean products for one organization.

    Use from one thread; call ``open()`` first and ``close()`` last. With ``atomic`` the whole
    run is one transaction that ``close(commit=False)`` rolls back; with ``dry_run`` every batch
    is rolled back after its counts are taken.
    """

    def __init__(self, *, organization_id: int, mode: str, dry_run: bool, atomic: bool) -> None:
        self.org = organization_id
        self.mode = mode
        self.dry_run = dry_run
        self.atomic = atomic
        self._outer: transaction.Atomic | None = None
        # every SKU still to come is new: the catalogue was empty at the start and nobody else
        # has written one of our SKUs since (the unique index tells us if they do)
        self.all_new = False

    def open(self) -> None:
        with connection.cursor() as cur:
            # The organization is a column of the stage, not a constant in the joins: with a
            # constant, an organization that is new since the last ANALYZE is estimated at one
            # row, and the planner scans all of its products for every staged row (batches got
            # slower as the import grew, 40 s each at 65k rows). As a join key it can only probe
            # the unique (organization_id, sku) index.
            cur.execute(_CREATE_STAGE)
            # Each staged row probes that index: a nested loop over index probes is always the
            # plan we want, never a hash or a scan of the whole catalogue, whatever the (often
            # stale: the table is growing under us) statistics say. With an empty table's
            # statistics the planner scanned the products table once per staged row (1.3k
            # rows/s). The connection is the writer thread's own and is closed after the job.
            for knob in ("enable_hashjoin", "enable_mergejoin", "enable_seqscan", "jit"):
                cur.execute(f"SET {knob} = off")
            # One commit per batch; waiting for each WAL flush cost a third of the writer's
            # time here. A crash can lose at most the last few hundred ms of batches, never
            # consistency, and a lost worker's job ends failed and is retried (upserts are
            # idempotent).
            cur.execute("SET synchronous_commit = off")
            cur.execute(_ANY_PRODUCT, [self.org])
            self.all_new = not cur.fetchone()[0]
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

    def write(self, batch: ProductBatch) -> BatchResult:
        if not len(batch):
            return BatchResult()
        try:
            return self._apply(batch)
        except OUTAGE_ERRORS:
            raise  # never a row error: every row would "fail" and the batch would be skipped
        except psycopg.errors.UniqueViolation:
            if self.all_new:
                # another writer added one of our SKUs since the job started: probe from now on
                self.all_new = False
                return self.write(batch)
            if len(batch) == 1:
                raise
        except _DB_ERRORS:
            if len(batch) == 1:
                raise
        # Replay row by row so each failing row is named; the good ones still go in.
        result = BatchResult()
        for row, sku, line in zip(batch.row_numbers, batch.skus, batch.lines, strict=True):
            try:
                result.add(self._apply(ProductBatch([row], [sku], line)))
            except OUTAGE_ERRORS:
                raise
            except _DB_ERRORS as exc:
                reason = str(exc).strip().splitlines()[0]
                result.errors.append(
                    RowError(
                        row,
                        f"Row {row}: the database refused this row ({reason})",
                        values_of(line),
                    )
                )
        return result

    def _apply(self, batch: ProductBatch) -> BatchResult:
        result = BatchResult()
        try:
            with transaction.atomic(), connection.cursor() as wrapper:
                cur = wrapper.cursor
                existing: set[str] = set()
                if not self.all_new:
                    cur.execute(_EXISTING, [[self.org] * len(batch), batch.skus])
                    existing = {row[0] for row in cur.fetchall()}
                new, old = batch, ProductBatch()
                if existing:
                    flags = [sku in existing for sku in batch.skus]
                    new = batch.subset([i for i, found in enumerate(flags) if not found])
                    old = batch.subset([i for i, found in enumerate(flags) if found])
                if self.mode == "create":
                    result.errors = _refused(old, "already exists")
                    old = ProductBatch()
                elif self.mode == "update":
                    result.errors = _refused(
                        new, "does not exist (update mode only changes existing products)"
                    )
                    new = ProductBatch()
                if len(new):
                    with cur.copy(_COPY_PRODUCTS) as copy:
                        copy.write(new.text)
                    result.created = len(new)
                if len(old):
                    if self.atomic:
                        cur.execute(f"TRUNCATE {_STAGE}")  # ON COMMIT empties only at the end
                    with cur.copy(_COPY_STAGE) as copy:
                        copy.write(old.text)
                    cur.execute(_UPDATE)
                    result.updated = cur.rowcount
                result.unchanged = len(old) - result.updated
                if self.dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass
        return result


def _refused(batch: ProductBatch, why: str) -> list[RowError]:
    return [
        RowError(row, f"Row {row}: SKU '{sku}' {why}", values_of(line))
        for row, sku, line in zip(batch.row_numbers, batch.skus, batch.lines, strict=True)
    ]
