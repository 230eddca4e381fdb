"""The component-import job: the product import's readers, row errors, batching and
``ProgressReporter``; COPY into a session temp table and a set-based upsert per batch.

A reader thread reads and validates the next batch while this thread's batch is in PostgreSQL,
through a bounded queue (memory stays flat whatever the file size). New and existing rows are
kept apart: existing ones are updated only where a value changed (so unchanged rows cost no
write and no sequence value), new ones inserted with ``NOT EXISTS``; created / updated /
unchanged are exact counts. Rows that repeat a (manufacturer, MPN) within a batch: the last wins.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from imports.models import ImportJob
from imports.pipeline.readers import FileReadError, open_source
from imports.pipeline.validation import HeaderError, RowError, map_header
from imports.progress import ProgressReporter

from . import selectors
from .catalogue import ALIASES, REQUIRED, STAGE_COLUMNS, Canonicalizer, ComponentValidator
from .models import Catalogue

_STAGE = "intake_component_stage"
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    organization_id bigint NOT NULL, row_number bigint NOT NULL,
    manufacturer text NOT NULL, mpn text NOT NULL,
    manufacturer_key text NOT NULL, mpn_key text NOT NULL, mpn_norm text NOT NULL,
    mpn_base text NOT NULL, description text NOT NULL, category text NOT NULL,
    package text NOT NULL, lifecycle text NOT NULL, datasheet_url text NOT NULL,
    stock bigint NOT NULL, moq integer NOT NULL, unit_price numeric, currency text NOT NULL,
    price_breaks jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY = f"COPY {_STAGE} (organization_id, {', '.join(STAGE_COLUMNS)}) FROM STDIN"
_DATA = STAGE_COLUMNS[1:3] + STAGE_COLUMNS[5:]  # what an update may change (keys stay)
_LATEST = f"""
SELECT DISTINCT ON (manufacturer_key, mpn_key) * FROM {_STAGE}
ORDER BY manufacturer_key, mpn_key, row_number DESC
"""
_UPDATE = f"""
UPDATE enrichment_component c SET {", ".join(f"{col} = s.{col}" for col in _DATA)},
    updated_at = now()
FROM ({_LATEST}) s
WHERE c.organization_id = s.organization_id AND c.manufacturer_key = s.manufacturer_key
  AND c.mpn_key = s.mpn_key
  AND ({", ".join("c." + col for col in _DATA)})
      IS DISTINCT FROM ({", ".join("s." + col for col in _DATA)})
"""
_INSERT_COLUMNS = [col for col in STAGE_COLUMNS if col != "row_number"]
_INSERT = f"""
INSERT INTO enrichment_component (organization_id, {", ".join(_INSERT_COLUMNS)},
    alternates, mpn_norm_shared, created_at, updated_at)
SELECT s.organization_id, {", ".join("s." + col for col in _INSERT_COLUMNS)}, '[]'::jsonb,
    false, now(), now()
FROM ({_LATEST}) s
WHERE NOT EXISTS (
    SELECT 1 FROM enrichment_component c
    WHERE c.organization_id = s.organization_id AND c.manufacturer_key = s.manufacturer_key
      AND c.mpn_key = s.mpn_key)
"""
# The organization is a stage column, not a constant in the joins (as in the product import's
# writer): with a constant, an organization new since the last ANALYZE is estimated at one row
# and each staged row scanned all of its components (quadratic: 80 s for 20k rows). As a join
# key it can only probe the unique (organization, manufacturer_key, mpn_key) index.

# A normalized MPN that different parts share is flagged once the catalogue has loaded: the
# shared keys are few, so they are found by one grouping pass and applied by index probes; a
# flag that no longer holds is cleared by probing the few flagged rows. (One UPDATE joined to the
# grouped catalogue took 272 s for 20k rows: the planner re-ran the grouping per row.)
_FLAG_SHARED = """
WITH shared AS (
    SELECT organization_id, mpn_norm FROM enrichment_component WHERE organization_id = %(org)s
    GROUP BY organization_id, mpn_norm HAVING count(DISTINCT mpn_key) > 1)
UPDATE enrichment_component c SET mpn_norm_shared = true
FROM shared s
WHERE c.organization_id = s.organization_id AND c.mpn_norm = s.mpn_norm AND NOT c.mpn_norm_shared
"""
_UNFLAG_SHARED = """
UPDATE enrichment_component c SET mpn_norm_shared = false
WHERE c.organization_id = %(org)s AND c.mpn_norm_shared AND NOT EXISTS (
    SELECT 1 FROM enrichment_component d
    WHERE d.organization_id = c.organization_id AND d.mpn_norm = c.mpn_norm
      AND d.mpn_key <> c.mpn_key)
"""

_DONE = object()


@dataclass
class Batch:
    rows: int
    last_row: int
    records: list[tuple]
    errors: list[RowError]


def _read(source, validator: ComponentValidator, size: int, resume_after: int) -> Iterator[Batch]:
    for numbers, rows in source.batches(size):
        if numbers[-1] <= resume_after:
            continue
        records, errors = validator.check_batch(numbers, rows)
        yield Batch(len(rows), numbers[-1], records, errors)


class ReaderThread(threading.Thread):
    """Reads and validates batches ahead of the writer (at most two waiting)."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        super().__init__(name="intake-component-reader", daemon=True)
        self.batches = batches
        self.out: queue.Queue[object] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            for batch in self.batches:
                while not self.stopped.is_set():
                    try:
                        self.out.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self.stopped.is_set():
                    return
        except BaseException as exc:  # handed to the writing thread
            self.error = exc
        finally:
            self.out.put(_DONE)

    def items(self) -> Iterator[Batch]:
        while True:
            item = self.out.get()
            if item is _DONE:
                if self.error is not None:
                    raise self.error
                return
            yield item  # type: ignore[misc]


def write_batch(org_id: int, records: list[tuple]) -> tuple[int, int]:
    """COPY ``records`` into the stage and upsert them; returns (created, updated)."""
    with transaction.atomic(), connection.cursor() as wrapper:
        cur = wrapper.cursor
        cur.execute(_CREATE_STAGE)
        # probe the unique index per staged row whatever the (growing) table's statistics say
        cur.execute("SET LOCAL enable_hashjoin = off")
        cur.execute("SET LOCAL enable_mergejoin = off")
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL jit = off")
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(f"TRUNCATE {_STAGE}")  # ON COMMIT empties it, unless an outer transaction
        with cur.copy(_COPY) as copy:
            for record in records:
                copy.write_row((org_id, *record))
        cur.execute(_UPDATE)
        updated = cur.rowcount
        cur.execute(_INSERT)
        created = cur.rowcount
    return created, updated


def run_component_import(job: ImportJob, reporter: ProgressReporter) -> None:
    """The ``component_import`` runner (in the ``reading`` stage from the start)."""
    try:
        source = open_source(Path(job.file.path), job.original_filename)
        header = map_header(source.header, aliases=ALIASES, required=REQUIRED)
        total = source.count_rows()
    except (FileReadError, HeaderError) as exc:
        reporter.failed(str(exc))
        return
    if header.unknown:
        reporter.warn(f"Unknown columns ignored: {', '.join(header.unknown)}")
    if total == 0:
        reporter.failed("File has a header row but no data rows.")
        return
    reporter.stage("importing", total_rows=total)
    validator = ComponentValidator(
        header, Canonicalizer(selectors.alias_map(organization_id=job.organization_id))
    )
    size = int(job.options.get("batch_size") or settings.COMPONENT_IMPORT_BATCH_SIZE)
    reader = ReaderThread(_read(source, validator, size, job.checkpoint_row))
    reader.start()
    cancelled = False
    try:
        for batch in reader.items():
            created = updated = 0
            errors = batch.errors
            written = True
            if batch.records:
                try:
                    created, updated = write_batch(job.organization_id, batch.records)
                except (DatabaseError, psycopg.Error) as exc:
                    written = False
                    reason = str(exc).strip().splitlines()[0]
                    errors = errors + [
                        RowError(
                            r[0], f"Row {r[0]}: the database refused this batch ({reason})", []
                        )
                        for r in batch.records
                    ]
            # a row that repeats an earlier one of its batch is counted unchanged
            unchanged = len(batch.records) - created - updated if written else 0
            if reporter.advance(
                batch.rows,
                created=created,
                updated=updated,
                unchanged=unchanged,
                errors=sorted(errors, key=lambda e: e.row_number),
                checkpoint_row=batch.last_row,
            ):
                cancelled = True
                break
    except FileReadError as exc:
        reporter.failed(str(exc))
        return
    finally:
        reader.stopped.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                reader.out.get(timeout=0.2)
        reader.join()
    reporter.stage("flagging")
    catalogue_loaded(job.organization_id)
    if cancelled:
        reporter.cancelled()
    else:
        reporter.finished()


def catalogue_loaded(organization_id: int) -> int:
    """After components changed: flag normalized MPNs that different parts share, refresh the
    planner's statistics and move the catalogue to a new version (returned)."""
    with connection.cursor() as cur:
        cur.execute("ANALYZE enrichment_component")
        cur.execute(_UNFLAG_SHARED, {"org": organization_id})
        cur.execute(_FLAG_SHARED, {"org": organization_id})
    return catalogue_bump(organization_id)


def catalogue_bump(organization_id: int) -> int:
    """A new catalogue version for the organization (recorded on lines enriched after it)."""
    with transaction.atomic():
        cat, _ = Catalogue.objects.select_for_update().get_or_create(
            organization_id=organization_id
        )
        cat.version += 1
        cat.save(update_fields=["version", "updated_at"])
    return cat.version
