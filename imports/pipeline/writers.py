"""The writer: the only pipeline code that touches the database.

Each batch is COPYed (psycopg's ``write_row``) into a session temp table, then applied to the
products table with set-based SQL that keeps new and existing rows apart: an UPDATE of the rows
that really changed, then an INSERT of the SKUs not yet there. So unchanged rows cost no write,
conflicts burn no sequence values, and created / updated / unchanged are exact counts.

Every batch runs in its own transaction (or savepoint, when the job is all-or-nothing). A database
error on a batch rolls that batch back and replays it row by row, so every failing row gets its
own row-numbered error and nothing already stored changes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction

from .validation import CleanProduct, RowError

COLUMNS = (
    "sku",
    "name",
    "description",
    "price",
    "currency",
    "quantity",
    "barcode",
    "category",
    "brand",
    "status",
)
_DATA = COLUMNS[1:]
_STAGE = "intake_product_stage"
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    row_number integer NOT NULL,
    sku text NOT NULL, name text NOT NULL, description text NOT NULL, price numeric NOT NULL,
    currency text NOT NULL, quantity bigint NOT NULL, barcode text NOT NULL,
    category text NOT NULL, brand text NOT NULL, status text NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY = f"COPY {_STAGE} (row_number, {', '.join(COLUMNS)}) FROM STDIN"
_UPDATE = f"""
UPDATE imports_product p SET {", ".join(f"{c} = s.{c}" for c in _DATA)}, updated_at = now()
FROM {_STAGE} s
WHERE p.organization_id = %(org)s AND p.sku = s.sku
  AND ({", ".join("p." + c for c in _DATA)}) IS DISTINCT FROM ({", ".join("s." + c for c in _DATA)})
"""
_INSERT = f"""
INSERT INTO imports_product (organization_id, {", ".join(COLUMNS)}, created_at, updated_at)
SELECT %(org)s, {", ".join("s." + c for c in COLUMNS)}, now(), now() FROM {_STAGE} s
WHERE NOT EXISTS (
    SELECT 1 FROM imports_product p WHERE p.organization_id = %(org)s AND p.sku = s.sku)
ON CONFLICT (organization_id, sku) DO NOTHING
"""
_EXISTING = f"""
SELECT s.row_number, s.sku FROM {_STAGE} s
JOIN imports_product p ON p.organization_id = %(org)s AND p.sku = s.sku ORDER BY s.row_number
"""
_MISSING = f"""
SELECT s.row_number, s.sku FROM {_STAGE} s
WHERE NOT EXISTS (
    SELECT 1 FROM imports_product p WHERE p.organization_id = %(org)s AND p.sku = s.sku)
ORDER BY s.row_number
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


class _DryRunRollback(Exception):
    pass


def _values(p: CleanProduct) -> list[str]:
    return [str(getattr(p, c)) for c in COLUMNS]


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

    def open(self) -> None:
        with connection.cursor() as cur:
            cur.execute(_CREATE_STAGE)
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

    def write(self, batch: list[CleanProduct]) -> BatchResult:
        if not batch:
            return BatchResult()
        try:
            return self._apply(batch)
        except DatabaseError:
            if len(batch) == 1:
                raise
        # Replay row by row so each failing row is named; the good ones still go in.
        result = BatchResult()
        for product in batch:
            try:
                result.add(self._apply([product]))
            except DatabaseError as exc:
                reason = str(exc).strip().splitlines()[0]
                result.errors.append(
                    RowError(
                        product.row_number,
                        f"Row {product.row_number}: the database refused this row ({reason})",
                        _values(product),
                    )
                )
        return result

    def _apply(self, batch: list[CleanProduct]) -> BatchResult:
        result = BatchResult()
        try:
            with transaction.atomic(), connection.cursor() as cur:
                if self.atomic:
                    cur.execute(f"TRUNCATE {_STAGE}")  # ON COMMIT only empties at the outer commit
                with cur.cursor.copy(_COPY) as copy:
                    for p in batch:
                        copy.write_row(
                            (
                                p.row_number,
                                p.sku,
                                p.name,
                                p.description,
                                p.price,
                                p.currency,
                                p.quantity,
                                p.barcode,
                                p.category,
                                p.brand,
                                p.status,
                            )
                        )
                params = {"org": self.org}
                rejected = 0
                if self.mode in ("create", "update"):
                    cur.execute(_EXISTING if self.mode == "create" else _MISSING, params)
                    refused = cur.fetchall()
                    by_row = {p.row_number: p for p in batch} if refused else {}
                    template = (
                        "Row {row}: SKU '{sku}' already exists"
                        if self.mode == "create"
                        else "Row {row}: SKU '{sku}' does not exist "
                        "(update mode only changes existing products)"
                    )
                    for row_number, sku in refused:
                        result.errors.append(
                            RowError(
                                row_number,
                                template.format(row=row_number, sku=sku),
                                _values(by_row[row_number]),
                            )
                        )
                    rejected = len(result.errors)
                if self.mode in ("update", "upsert"):
                    cur.execute(_UPDATE, params)
                    result.updated = cur.rowcount
                if self.mode in ("create", "upsert"):
                    cur.execute(_INSERT, params)
                    result.created = cur.rowcount
                result.unchanged = len(batch) - result.created - result.updated - rejected
                if self.dry_run:
                    raise _DryRunRollback
        except _DryRunRollback:
            pass
        return result
