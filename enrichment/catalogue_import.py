"""The component-import job, on the product import's pipeline (``run_pipeline``): its readers
and validator process (rows checked by ``catalogue.ComponentPlan``, COPY text built there), its
writer thread, batching, row errors, per-batch reporting with checkpoints, resume and progress.

What is the component import's own: ``ComponentWriter`` COPYs each batch into a session temp
table and applies it set-based (a first load's batches go straight into the catalogue). New and
existing rows are kept apart: existing ones are updated only where a value changed (so unchanged
rows cost no write and no sequence value), new ones inserted with ``NOT EXISTS``; created /
updated / unchanged are exact counts. Rows that repeat a (manufacturer, MPN) within a batch: the
last wins. Once the batches are done, normalized MPNs that different parts share are flagged:
after a first load by grouping the whole catalogue (``catalogue_loaded``), after a later import
only in the groups of the parts it added (``flag_some``).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from imports.models import ImportJob, JobStatus
from imports.pipeline.copy_text import CopyBatch, values_of
from imports.pipeline.product_import import run_pipeline
from imports.pipeline.readers import FileReadError, open_source
from imports.pipeline.validation import HeaderError, map_header
from imports.pipeline.writers import BatchResult, BatchWriter
from imports.progress import ProgressReporter

from . import selectors
from .catalogue import ALIASES, COPY_COLUMNS, FIELDS, REQUIRED, ComponentPlan, SharedNorms
from .enrich import switched_off
from .models import Catalogue

_STAGE = "intake_component_stage"
# row_number: the line's place in its batch (the last of a repeated part wins)
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    organization_id bigint NOT NULL, row_number bigint GENERATED ALWAYS AS IDENTITY,
    manufacturer text NOT NULL, mpn text NOT NULL,
    manufacturer_key text NOT NULL, mpn_key text NOT NULL, mpn_norm text NOT NULL,
    mpn_base text NOT NULL, description text NOT NULL, category text NOT NULL,
    package text NOT NULL, lifecycle text NOT NULL, datasheet_url text NOT NULL,
    stock bigint NOT NULL, moq integer NOT NULL, unit_price numeric, currency text NOT NULL,
    price_breaks jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""
_COLUMNS = f"organization_id, {', '.join(COPY_COLUMNS)}"
_COPY = f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN"
# A first load's batch goes straight into the catalogue (its other columns are the table's
# defaults): no stage, no sort, a tenth less of the writer's database time than staging it
# (1M parts, measured). A part the batch repeats, or that exists after all, makes the unique
# index refuse it, and it and every later batch take the staged path (``BatchWriter._again``).
_COPY_NEW = f"COPY enrichment_component ({_COLUMNS}) FROM STDIN"
_DATA = COPY_COLUMNS[:2] + COPY_COLUMNS[4:]  # what an update may change (keys stay)
_LATEST = f"""
SELECT DISTINCT ON (mpn_norm, mpn_key, manufacturer_key) {_COLUMNS} FROM {_STAGE}
ORDER BY mpn_norm, mpn_key, manufacturer_key, row_number DESC
"""
_UPDATE = f"""
UPDATE enrichment_component c SET {", ".join(f"{col} = s.{col}" for col in _DATA)},
    updated_at = now()
FROM ({_LATEST}) s
WHERE c.organization_id = s.organization_id AND c.mpn_norm = s.mpn_norm
  AND c.mpn_key = s.mpn_key AND c.manufacturer_key = s.manufacturer_key
  AND ({", ".join("c." + col for col in _DATA)})
      IS DISTINCT FROM ({", ".join("s." + col for col in _DATA)})
"""
_INSERT = f"""
INSERT INTO enrichment_component ({_COLUMNS})
SELECT {_COLUMNS} FROM ({_LATEST}) s
WHERE NOT EXISTS (
    SELECT 1 FROM enrichment_component c
    WHERE c.organization_id = s.organization_id AND c.mpn_norm = s.mpn_norm
      AND c.mpn_key = s.mpn_key AND c.manufacturer_key = s.manufacturer_key)
RETURNING mpn_norm
"""
# The organization is a stage column, not a constant in the joins (as in the product import's
# writer): with a constant, an organization new since the last ANALYZE is estimated at one row
# and each staged row scanned all of its components (quadratic: 80 s for 20k rows). As a join
# key it can only probe the unique (organization, mpn_norm, mpn_key, manufacturer_key) index.
# A staged batch is read in that index's order (``_LATEST``; the normalized MPN is a function of
# the MPN key, so the same rows are distinct), and its probes and inserts walk the B-tree in order.
# A row error shows the row's file fields (not the keys computed from them)
_SHOWN = [COPY_COLUMNS.index(f) for f in FIELDS]
_ANY_COMPONENT = "SELECT EXISTS (SELECT 1 FROM enrichment_component WHERE organization_id = %s)"

# A normalized MPN that different parts share is flagged once the catalogue has loaded, in
# one transaction: the shared keys are found by one grouping pass into a temp table (few rows,
# and the planner knows it after its ANALYZE), then flags that no longer hold are cleared (the
# flagged rows come from a partial index) and new ones set by probes of the unique index.
# Measured on 1M parts: 0.75-0.86 s against 1.64-1.84 s for one UPDATE joined to the grouping
# (the planner expected a third of the keys shared and hashed the whole catalogue; an older
# form re-ran the grouping per row: 272 s for 20k rows). min/max in the "C" collation hash the
# groups where count(DISTINCT) sorted each one.
_SHARED = "intake_shared_norm"
_FIND_SHARED = f"""
CREATE TEMP TABLE {_SHARED} AS
SELECT mpn_norm FROM enrichment_component WHERE organization_id = %(org)s
GROUP BY mpn_norm HAVING min(mpn_key COLLATE "C") <> max(mpn_key COLLATE "C")
"""


# The grouping runs before the helper's ANALYZE has finished: on a first load the planner still
# estimates the new organization at one row and probed an index for its rows, visiting the heap
# in that index's order (the reversed MPN index of the time, on an expression: a random page per
# row, 7.7 s of heap fetches for 1M fresh parts, measured). A bitmap scan reads the
# organization's pages in table order, whatever the statistics say, and only its pages when the
# table holds larger tenants too.
_BITMAP_ONLY, _PLANNER_DEFAULTS = switched_off(
    "enable_seqscan", "enable_indexscan", "enable_indexonlyscan"
)
_UNFLAG_SHARED = f"""
UPDATE enrichment_component c SET mpn_norm_shared = false
WHERE c.organization_id = %(org)s AND c.mpn_norm_shared
  AND NOT EXISTS (SELECT 1 FROM {_SHARED} s WHERE s.mpn_norm = c.mpn_norm)
"""
_FLAG_SHARED = f"""
UPDATE enrichment_component c SET mpn_norm_shared = true
FROM {_SHARED} s
WHERE c.organization_id = %(org)s AND c.mpn_norm = s.mpn_norm AND NOT c.mpn_norm_shared
"""
# The flags of some normalized MPNs only (the parts an import added, an admin edit's old and new
# key): each group read from the unique index, which leads with the normalized MPN, and a flag
# written only where it changes. Milliseconds where grouping the whole catalogue takes 1.6 s
# per million parts. An import only adds parts or changes their data (never their keys), so
# only the groups it added to can change. Every read goes through the normalized MPNs asked
# (LATERAL), whatever the statistics say: with a plain join, a first load's statistics (an
# organization of one part, the planner believes) drove the UPDATE from the organization's
# rows, each against every group: 358 s for 2,000 groups in 1M parts (measured). (OFFSET 0:
# the parts' subquery stays one, probed for each group, instead of being joined in freely.)
# Then the flags that change, by primary key (``_SET_SHARED``).
_SHARED_CHANGED = """
SELECT p.id, k.norm, g.shared
FROM unnest(%(norms)s::text[]) AS k(norm)
CROSS JOIN LATERAL (
    SELECT min(mpn_key COLLATE "C") <> max(mpn_key COLLATE "C") AS shared
    FROM enrichment_component
    WHERE organization_id = %(org)s AND mpn_norm = k.norm
) g
CROSS JOIN LATERAL (
    SELECT id FROM enrichment_component
    WHERE organization_id = %(org)s AND mpn_norm = k.norm AND mpn_norm_shared <> g.shared
    OFFSET 0
) p
"""
# by primary key, in its order (two flaggings lock rows in one order), and only where the part
# is still in the group read and its flag still differs: a part renamed meanwhile (the admin)
# keeps what its own flagging wrote
_SET_SHARED = """
UPDATE enrichment_component c SET mpn_norm_shared = u.shared
FROM unnest(%s::bigint[], %s::text[], %s::boolean[]) AS u(id, norm, shared)
WHERE c.id = u.id AND c.mpn_norm = u.norm AND c.mpn_norm_shared <> u.shared
"""
# the index, whatever the statistics say (a new organization's are of an empty one)
_INDEX_ONLY, _PLANNER_DEFAULTS_SOME = switched_off(
    "enable_seqscan", "enable_bitmapscan", "enable_hashjoin", "enable_mergejoin"
)
# More normalized MPNs of new parts than this in one import (or in one of its writers), or more
# candidate groups from a first load's file: they are not kept (memory), and the whole catalogue
# is grouped again instead. One limit for both (the validator process applies it to the file's).
NEW_NORMS_MAX = SharedNorms.MAX_SHARED
# Another component import of the organization that is not completed and added parts after the
# last grouping of the whole catalogue (or still may): its flagging may never have run (an
# internal error, a lost worker, a cancel by the recovery), and what it added is not known here.
_UNSETTLED = """
SELECT EXISTS (
    SELECT 1 FROM imports_importjob j
    LEFT JOIN enrichment_catalogue cat ON cat.organization_id = j.organization_id
    WHERE j.organization_id = %(org)s AND j.kind = %(kind)s AND j.id <> %(job)s
      AND j.status <> %(completed)s AND j.created_rows > 0
      AND (j.finished_at IS NULL OR cat.regrouped_at IS NULL OR j.finished_at > cat.regrouped_at)
)
"""

# The planner's statistics after a load, for the columns matching's plans read (the others'
# wait for autovacuum): 0.20-0.29 s on 1M parts against 0.47-0.56 s for every column.
_ANALYZE = (
    "ANALYZE enrichment_component "
    "(organization_id, manufacturer_key, mpn_key, mpn_norm, mpn_base, mpn_norm_shared)"
)
# After a first load the statistics come from a tenth of the usual sample (3,000 rows): what
# the planner must know at once is how large the organization now is, and a sample that small
# tells it (1M parts: 1,000,897 rows estimated for 1,002,000). The full sample read nearly
# every page of the fresh heap, setting its hint bits (full-page WAL writes, data checksums
# being on): 0.56-0.68 s of a 10 s job, against 0.08 s (measured). The matching statements'
# plans are pinned and do not lean on the finer histograms; the full sample comes with
# autovacuum's next ANALYZE of the table (once a tenth of it has changed).
_FIRST_LOAD_TARGET = "SET LOCAL default_statistics_target = 10"


class ComponentWriter(BatchWriter):
    """Applies batches of clean components (``ComponentChecker.batch_of``) for one
    organization: COPY into the stage, then one UPDATE and one INSERT (see the module).

    A catalogue that is empty when the job starts (a first load) COPYs each batch straight
    into the table, as the product writer does: every part still to come is new. A part that
    exists after all (a repeat in the file, or another writer's) makes the unique index refuse
    the batch, and it and every later batch take the staged, probing path."""

    stage = _STAGE
    create_stage = _CREATE_STAGE
    any_row = _ANY_COMPONENT

    def __init__(self, *, organization_id: int, atomic: bool = False) -> None:
        super().__init__(organization_id=organization_id, atomic=atomic)
        # the normalized MPNs of the parts the staged path added (for their flags); None once
        # there were more than NEW_NORMS_MAX, or on a first load (every part is new)
        self.new_norms: set[str] | None = set()
        self.started_empty = False

    def _prepare(self, cur) -> None:
        # the organization had no part when this writer started (before any of this job's)
        self.started_empty = self.all_new
        if self.all_new:
            self.new_norms = None

    def _apply(self, batch: CopyBatch, *, replay: bool = False) -> BatchResult:
        with transaction.atomic(), connection.cursor() as wrapper:
            cur = wrapper.cursor
            if self.all_new:
                with cur.copy(_COPY_NEW) as copy:
                    copy.write(batch.text)
                return BatchResult(len(batch), 0, 0)
            self._clear_stage(cur, replay=replay)
            with cur.copy(_COPY) as copy:
                copy.write(batch.text)
            cur.execute(_UPDATE)
            updated = cur.rowcount
            cur.execute(_INSERT)
            created = cur.rowcount
            if self.new_norms is not None:
                self.new_norms.update(row[0] for row in cur.fetchall())
                if len(self.new_norms) > NEW_NORMS_MAX:
                    self.new_norms = None
        # a row that repeats an earlier one of its batch is counted unchanged
        return BatchResult(created, updated, len(batch) - created - updated)

    def _values(self, line: str) -> list[str]:
        values = values_of(line, len(COPY_COLUMNS))
        return [values[i] for i in _SHOWN]


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

    writers: list[ComponentWriter] = []
    # an attempt that goes on after an earlier one's batches does not know what they added
    resumed = bool(job.checkpoint_row)
    # before any writer looks: a flagging or an admin edit since then moves it
    version = selectors.catalogue_version(organization_id=job.organization_id)

    def new_writer() -> ComponentWriter:
        writer = ComponentWriter(organization_id=job.organization_id)
        writers.append(writer)
        return writer

    def settle(shared: list[str] | None) -> None:
        # also after a stop part-way: the batches committed so far are in the catalogue
        reporter.stage("flagging")
        started = timezone.now()  # before the checks: every part committed by now is known
        if shared is not None and _first_load_alone(job, writers, version):
            first_load_flagged(job.organization_id, shared, started=started)
            return
        added = [w.new_norms for w in writers]
        norms = None if not writers or None in added else set().union(*added)
        if resumed or norms is None or len(norms) > NEW_NORMS_MAX or _others_unsettled(job):
            catalogue_loaded(job.organization_id)
        else:
            flag_some(job.organization_id, norms)

    run_pipeline(
        job,
        reporter,
        plan=ComponentPlan(
            selectors.alias_map(organization_id=job.organization_id),
            # a catalogue with parts already (a resumed attempt's too) is no first load: the
            # file's groups would go unused, and none come back (``settle``'s ``shared``)
            gather_groups=not resumed and not _any_component(job.organization_id),
        ),
        total=total,
        batch_size=int(job.options.get("batch_size") or settings.COMPONENT_IMPORT_BATCH_SIZE),
        new_writer=new_writer,
        writers=settings.COMPONENT_IMPORT_WRITERS,
        checkpointed=True,
        settle=settle,
    )


def catalogue_loaded(organization_id: int) -> int:
    """After components changed: flag normalized MPNs that different parts share, refresh the
    planner's statistics and move the catalogue to a new version (returned)."""
    # In a worker the statistics are taken on a second connection while this one groups the
    # keys: the two passes over the fresh catalogue take both cores instead of one in turn
    # (1M parts: 0.64 s of ANALYZE, 1.16 s of grouping). Inside a caller's transaction other
    # connections would not see its rows: one after the other.
    started = timezone.now()  # every part committed by now is in the grouping
    analyzing: Future | None = None
    helper = None
    if connection.in_atomic_block:
        _analyze()
    else:
        helper = ThreadPoolExecutor(1, thread_name_prefix="intake-analyze")
        analyzing = helper.submit(_analyze, own_connection=True)
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(_BITMAP_ONLY)
            cur.execute(_FIND_SHARED, {"org": organization_id})
            cur.execute(_PLANNER_DEFAULTS)
            cur.execute(f"ANALYZE {_SHARED}")
            if analyzing is not None:
                analyzing.result()  # the updates below are planned on fresh statistics
            cur.execute(_UNFLAG_SHARED, {"org": organization_id})
            cur.execute(_FLAG_SHARED, {"org": organization_id})
            # now, not at commit: a caller's own transaction may call again (on an error, the
            # rollback of this block's savepoint undoes the CREATE)
            cur.execute(f"DROP TABLE {_SHARED}")
    finally:
        if helper is not None:
            helper.shutdown()  # waits for the ANALYZE, whatever happened here
    return catalogue_bump(organization_id, regrouped_at=started)


def _any_component(organization_id: int) -> bool:
    with connection.cursor() as cur:
        cur.execute(_ANY_COMPONENT, [organization_id])
        return cur.fetchone()[0]


def _first_load_alone(job: ImportJob, writers: list[ComponentWriter], version: int) -> bool:
    """Whether the catalogue holds this job's parts and nothing else: it was empty when one
    of the job's writers started, and since then no other flagging or admin edit has moved
    its version, and no other import that may not have flagged added parts. Then the groups
    of the job's file (``SharedNorms``) are all the groups there are."""
    return (
        any(w.started_empty for w in writers)
        and selectors.catalogue_version(organization_id=job.organization_id) == version
        and not _others_unsettled(job)
    )


def first_load_flagged(organization_id: int, shared: list[str], *, started: datetime) -> int:
    """After a first load that the catalogue holds alone (``_first_load_alone``): the flags
    of the normalized MPNs its file may share (``SharedNorms.shared()``, checked here against
    the catalogue), the planner's statistics, and a new version (returned). Counts as a
    grouping of the whole catalogue: it holds nothing else. 1M parts: 0.15-0.2 s, where
    reading them back, grouping them and the full ANALYZE took 1.5-1.8 s (measured).
    ``started``: when the checks began (``catalogue_bump``'s ``regrouped_at``)."""
    _analyze(first_load=True)
    _flag(organization_id, shared)
    return catalogue_bump(organization_id, regrouped_at=started)


def _others_unsettled(job: ImportJob) -> bool:
    with connection.cursor() as cur:
        cur.execute(
            _UNSETTLED,
            {
                "org": job.organization_id,
                "job": job.id,
                "kind": job.kind,
                "completed": JobStatus.COMPLETED,
            },
        )
        return cur.fetchone()[0]


def flag_some(organization_id: int, norms: Iterable[str]) -> int:
    """After parts were added, edited or deleted: the flags of the groups of ``norms`` (their
    normalized MPNs) taken again, and a new catalogue version (returned). The rest of the
    catalogue's flags cannot have changed; its statistics are autovacuum's to refresh."""
    _flag(organization_id, norms)
    return catalogue_bump(organization_id)


def _flag(organization_id: int, norms: Iterable[str]) -> None:
    norms = sorted(set(norms))
    if norms:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(_INDEX_ONLY)
            cur.execute(_SHARED_CHANGED, {"org": organization_id, "norms": norms})
            changed = sorted(cur.fetchall())
            if changed:
                cur.execute(_SET_SHARED, [list(column) for column in zip(*changed, strict=True)])
            cur.execute(_PLANNER_DEFAULTS_SOME)


# A load of many parts sets off autovacuum on the catalogue, and an autovacuum holds the lock
# ANALYZE takes. PostgreSQL cancels an autovacuum that blocks another statement, but only once
# the waiting statement's ``deadlock_timeout`` has passed, 1 s by default: a benchmark import
# of 1M parts whose ANALYZE met one flagged in 1.16 s against 0.16-0.31 s (the server log showed
# the cancel). The ANALYZE's transaction lowers it, where the role may set it (a superuser, or
# ``GRANT SET ON PARAMETER deadlock_timeout``, PostgreSQL 15 and later); elsewhere the ANALYZE
# waits out the server's setting as before. Autovacuum takes the table again at its next round.
_AUTOVACUUM_YIELDS = """
SELECT current_setting('deadlock_timeout'), set_config('deadlock_timeout', %s, true)
WHERE has_parameter_privilege('deadlock_timeout', 'SET')
"""
_WAIT_AGAIN = "SELECT set_config('deadlock_timeout', %s, true)"
AUTOVACUUM_WAIT = "20ms"


def _autovacuum_yields_soon(cur) -> str | None:
    """Within the current transaction, an autovacuum that blocks this connection is cancelled
    after ``AUTOVACUUM_WAIT`` instead of ``deadlock_timeout`` (where the role may say so).
    Returns the setting it replaced (None: unchanged), for a caller's outer transaction."""
    if connection.pg_version < 150000:  # has_parameter_privilege is 15's
        return None
    cur.execute(_AUTOVACUUM_YIELDS, [AUTOVACUUM_WAIT])
    row = cur.fetchone()
    return row[0] if row else None


def _analyze(*, own_connection: bool = False, first_load: bool = False) -> None:
    try:
        with transaction.atomic(), connection.cursor() as cur:
            before = _autovacuum_yields_soon(cur)
            if first_load:
                cur.execute(_FIRST_LOAD_TARGET)
            cur.execute(_ANALYZE)
            if before is not None:  # the rest of a caller's transaction waits as it did
                cur.execute(_WAIT_AGAIN, [before])
    finally:
        if own_connection:
            connection.close()  # the helper thread's own


def catalogue_bump(organization_id: int, *, regrouped_at: datetime | None = None) -> int:
    """A new catalogue version for the organization (recorded on lines enriched after it);
    ``regrouped_at``: when a grouping of the whole catalogue that has now finished began (the
    jobs' clock, as their ``finished_at``)."""
    with transaction.atomic():
        cat, _ = Catalogue.objects.select_for_update().get_or_create(
            organization_id=organization_id
        )
        cat.version += 1
        fields = ["version", "updated_at"]
        if regrouped_at is not None:
            cat.regrouped_at = regrouped_at
            fields.append("regrouped_at")
        cat.save(update_fields=fields)
    return cat.version
