"""The component import on the product import's pipeline: validator process, writer thread,
COPY into the stage and a set-based upsert, row errors, checkpoints and resume."""

from __future__ import annotations

import multiprocessing
import threading
from decimal import Decimal

import pytest
from django.db import DataError, connection
from django.utils import timezone

from enrichment import catalogue_import, services
from enrichment.catalogue_import import ComponentWriter, catalogue_loaded
from enrichment.models import Catalogue, Component
from imports import jobs
from imports.models import ImportJob, ImportRowError, JobKind, JobStatus
from imports.services import import_job_cancel, import_job_retry
from tests.fixtures.enrichment import components_csv
from tests.fixtures.files import upload

# the writer thread has its own connection: it must see the job the test created
pytestmark = pytest.mark.django_db(transaction=True)


def _job(org, rows, *, batch_size: int | None = None) -> ImportJob:
    job = services.component_import_create(
        organization=org, user=None, upload=upload(components_csv(rows), "parts.csv")
    )
    if batch_size:
        job.options = {**job.options, "batch_size": batch_size}
        job.save(update_fields=["options"])
    return job


def _run(job: ImportJob) -> ImportJob:
    jobs.run_job(str(job.id))
    job.refresh_from_db()
    return job


def _run_cancelled_in_first_batch(job: ImportJob) -> ImportJob:
    """``_run``, with a cancel that arrives while the first batch is written."""
    original = jobs.ProgressReporter.advance

    def advance(self, n, **kw):
        import_job_cancel(job=ImportJob.objects.get(pk=job.pk))
        return original(self, n, **kw)

    jobs.ProgressReporter.advance = advance
    try:
        return _run(job)
    finally:
        jobs.ProgressReporter.advance = original


def _part(i: int, maker: str = "Nexperia", **over) -> list[str]:
    row = {
        "maker": maker,
        "mpn": f"BAS{i:05d}J",
        "desc": f"Diode {i}",
        "cat": "Diodes",
        "pkg": "SOD-323F",
        "life": "active",
        "url": f"https://example.com/{i}.pdf",
        "stock": str(i * 10),
        "moq": "1",
        "price": "0.02",
        "cur": "USD",
        "breaks": "",
    }
    row.update(over)
    return list(row.values())


def test_bad_rows_get_row_errors_and_the_good_rows_are_imported(org):
    rows = [_part(i) for i in range(1, 231)]
    # file row = index + 2 (the header is row 1)
    rows[4] = _part(5, life="dead")
    rows[40] = _part(41, breaks="1-0.1")
    rows[77] = _part(78, maker="")
    rows[120] = _part(121, cur="ZZZ", stock="-3")
    rows[199] = _part(200, price="abc", url="ftp://x")
    rows[10] = _part(11, maker="TI", price="", breaks="100:0.05; 1:0.10")  # alias, breaks
    rows[11] = _part(12, desc="tab\there, back\\slash")  # needs COPY escaping
    rows[12] = _part(12, stock="77")  # repeats row 14's part in the same batch: the last wins
    job = _run(_job(org, rows, batch_size=50))

    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.processed_rows == 230
    assert [e["row"] for e in job.errors] == [6, 42, 79, 122, 201]
    messages = [e["message"] for e in job.errors]
    assert messages[0] == (
        "Row 6: lifecycle 'dead' is not one of active, nrnd, last_time_buy, eol, obsolete, unknown"
    )
    assert messages[1] == (
        "Row 42: price_breaks '1-0.1' is not quantity:price;quantity:price (e.g. 1:0.10;100:0.05)"
    )
    assert messages[2] == "Row 79: manufacturer is required"
    assert "currency 'ZZZ'" in messages[3] and "stock '-3'" in messages[3]
    assert "unit_price 'abc' is not a number" in messages[4] and "datasheet_url" in messages[4]
    # 225 good rows, one of them a repeat of another's part
    assert (job.created_rows, job.updated_rows, job.unchanged_rows) == (224, 0, 1)
    assert Component.objects.filter(organization=org).count() == 224
    assert not Component.objects.filter(mpn__in=["BAS00005J", "BAS00041J", "BAS00078J"]).exists()

    ti = Component.objects.get(organization=org, mpn="BAS00011J")
    assert ti.manufacturer == "Texas Instruments"  # through the built-in alias
    assert ti.price_breaks == [[100, "0.05"], [1, "0.10"]]  # as the file gives them
    assert ti.unit_price == Decimal("0.1")  # the smallest quantity's when no unit price is given
    tricky = Component.objects.get(organization=org, mpn="BAS00012J")
    assert (tricky.description, tricky.stock) == ("Diode 12", 77)
    plain = Component.objects.get(organization=org, mpn="BAS00199J")
    assert (plain.lifecycle, plain.stock, plain.unit_price) == ("active", 1990, Decimal("0.02"))
    assert multiprocessing.active_children() == []  # the validator process is gone

    # the same file again: nothing changes; a changed price is an update
    again = _run(_job(org, rows, batch_size=50))
    assert (again.created_rows, again.updated_rows, again.unchanged_rows) == (0, 0, 225)
    rows[2] = _part(3, price="0.03")
    third = _run(_job(org, rows, batch_size=50))
    assert (third.created_rows, third.updated_rows, third.unchanged_rows) == (0, 1, 224)
    assert Component.objects.get(organization=org, mpn="BAS00003J").unit_price == Decimal("0.03")


def test_escaped_text_arrives_as_written(org):
    rows = [_part(1, desc="tab\there, back\\slash\nand a new line")]
    job = _run(_job(org, rows))
    assert job.status == JobStatus.COMPLETED and job.created_rows == 1
    assert Component.objects.get().description == "tab\there, back\\slash\nand a new line"


def test_shared_normalized_keys_are_flagged_when_the_catalogue_loads(org, other_org):
    first = _run(_job(org, [_part(1, "Littelfuse", mpn="1.5SMC68CA"), _part(2)]))
    assert first.status == JobStatus.COMPLETED
    assert not Component.objects.get(mpn="1.5SMC68CA").mpn_norm_shared
    version = Catalogue.objects.get(organization=org).version

    # the other part with the same normalized key arrives in a later batch of another import
    rows = [_part(i) for i in range(3, 30)] + [_part(30, "Littelfuse", mpn="1.5SMC6.8CA")]
    second = _run(_job(org, rows, batch_size=10))
    assert second.status == JobStatus.COMPLETED and second.created_rows == 28
    flags = dict(
        Component.objects.filter(organization=org, mpn__startswith="1.5").values_list(
            "mpn", "mpn_norm_shared"
        )
    )
    assert flags == {"1.5SMC68CA": True, "1.5SMC6.8CA": True}
    assert not Component.objects.filter(organization=org, mpn="BAS00003J", mpn_norm_shared=True)
    assert Catalogue.objects.get(organization=org).version == version + 1
    assert [s["stage"] for s in second.stages][-3:] == ["importing", "flagging", "done"]

    # another tenant's part with that key is not a collision of this catalogue, nor is the same
    # MPN from two manufacturers (one key: the exact tier tells them apart by manufacturer)
    _run(
        _job(
            other_org,
            [_part(1, "Littelfuse", mpn="1.5SMC68CA"), _part(2, "Vishay", mpn="1.5smc68ca")],
        )
    )
    assert not Component.objects.filter(organization=other_org, mpn_norm_shared=True).exists()

    # a flag that no longer holds is cleared when the catalogue changes again
    Component.objects.filter(organization=org, mpn="1.5SMC6.8CA").delete()
    catalogue_loaded(org.id)
    assert not Component.objects.filter(organization=org, mpn_norm_shared=True).exists()


def test_a_break_price_no_column_can_hold_is_a_row_error_that_names_it(org):
    """The first break is the unit price when none is given (numeric(14, 6)): a price too
    large for it is refused by the checks, naming the column and the limit, not left for the
    database to refuse with an overflow that names neither."""
    rows = [_part(1), _part(2, price="", breaks="1:123456789012")]
    job = _run(_job(org, rows))
    assert job.status == JobStatus.COMPLETED and job.created_rows == 1
    assert [e["message"] for e in job.errors] == [
        "Row 3: price_breaks price '123456789012' is too large (at most 99999999) in "
        "'1:123456789012'"
    ]


def test_a_batch_the_database_refuses_is_replayed_row_by_row(org):
    from django.db import connection

    rows = [_part(i) for i in range(1, 21)]
    # a rule only the database knows (as a constraint added by hand would be): the checks pass
    # the row, PostgreSQL refuses its batch, and the replay finds it
    with connection.cursor() as cur:
        cur.execute(
            "ALTER TABLE enrichment_component ADD CONSTRAINT test_no_seven "
            "CHECK (mpn <> 'BAS00007J') NOT VALID"
        )
    try:
        job = _run(_job(org, rows, batch_size=10))
    finally:
        with connection.cursor() as cur:
            cur.execute("ALTER TABLE enrichment_component DROP CONSTRAINT test_no_seven")
    assert job.status == JobStatus.COMPLETED
    assert [e["row"] for e in job.errors] == [8], job.errors[:2]
    error = job.errors[0]
    assert error["message"].startswith("Row 8: the database refused this row (new row for"), error[
        "message"
    ]
    assert "test_no_seven" in error["message"]  # the rule it broke, by name
    stored = ImportRowError.objects.get(job=job)
    assert stored.values[:3] == ["Nexperia", "BAS00007J", "Diode 7"]  # its fields, not keys
    assert job.created_rows == 19 and Component.objects.count() == 19


def test_a_cancelled_import_resumes_after_its_committed_batches(org, run_worker):
    rows = [_part(i) for i in range(1, 51)]
    rows[2] = _part(3, life="zombie")  # a row error in the first batch, kept across attempts
    job = _job(org, rows, batch_size=10)
    job = _run_cancelled_in_first_batch(job)
    assert job.status == JobStatus.CANCELLED and 0 < job.processed_rows < 50
    committed, checkpoint = job.processed_rows, job.checkpoint_row
    assert Component.objects.count() == job.created_rows == committed - 1

    retried = import_job_retry(job=job)
    assert retried.attempt == 2
    run_worker()
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert (job.processed_rows, job.created_rows, job.unchanged_rows) == (50, 49, 0)
    assert [e["row"] for e in job.errors] == [4]  # once, not again by the second attempt
    assert Component.objects.count() == 49
    assert job.warnings == [
        f"Attempt 2 goes on after row {checkpoint}: the rows up to it were imported by an "
        "earlier attempt."
    ]


def test_a_first_load_that_repeats_a_part_in_a_later_batch_keeps_the_last_row(org):
    """A first load skips the existence probes; a part repeated in a later batch makes the
    unique index refuse that batch, which then takes the probing path: the last row wins."""
    rows = [_part(i) for i in range(1, 31)]
    rows[25] = _part(3, stock="12345")  # row 27 repeats row 4's part, two batches later
    job = _run(_job(org, rows, batch_size=10))
    assert job.status == JobStatus.COMPLETED and job.errors == []
    assert (job.created_rows, job.updated_rows, job.unchanged_rows) == (29, 1, 0)
    assert Component.objects.get(organization=org, mpn="BAS00003J").stock == 12345
    assert Component.objects.filter(organization=org).count() == 29


def test_a_first_load_goes_straight_in_and_a_repeat_in_its_batch_still_keeps_the_last_row(org):
    """A first load's batch is COPYed into the catalogue as it is; a part repeated within that
    batch makes the unique index refuse it, and the staged path keeps the last row."""
    rows = [_part(i) for i in range(1, 21)]
    rows[1] = _part(2, price="", breaks="")  # no price at all: none stored, not 0
    rows[18] = _part(15, stock="777")  # row 20 repeats row 16's part in the same batch
    job = _run(_job(org, rows, batch_size=10))
    assert job.status == JobStatus.COMPLETED and job.errors == []
    assert (job.created_rows, job.updated_rows, job.unchanged_rows) == (19, 0, 1)
    assert Component.objects.get(organization=org, mpn="BAS00015J").stock == 777
    # the first batch went straight in: no price is none, not 0, and the table's defaults
    no_price = Component.objects.get(organization=org, mpn="BAS00002J")
    assert no_price.unit_price is None and no_price.price_breaks == []
    first = Component.objects.get(organization=org, mpn="BAS00003J")
    assert first.alternates == [] and first.mpn_norm_shared is False
    assert first.created_at is not None and first.updated_at >= first.created_at
    assert first.unit_price == Decimal("0.02") and first.stock == 30
    assert first.mpn_key == "BAS00003J" and first.manufacturer_key == "NEXPERIA"


def _slow_first_batch(monkeypatch, seen: list[str]):
    """Batch 1 (rows 2-11) waits before it is written, so that the other writer thread writes
    batch 2 meanwhile; each write is recorded in the order it ends."""
    import threading
    import time

    original = ComponentWriter._apply

    def _apply(self, batch, *, replay=False):
        if batch.row_numbers[0] == 2 and not replay:
            time.sleep(0.6)
        result = original(self, batch, replay=replay)
        seen.append(f"wrote {batch.row_numbers[0]} on {threading.current_thread().name}")
        return result

    monkeypatch.setattr(ComponentWriter, "_apply", _apply)


def test_two_writers_write_side_by_side_and_commit_in_file_order(org, settings, monkeypatch):
    settings.COMPONENT_IMPORT_WRITERS = 2
    seen: list[str] = []
    _slow_first_batch(monkeypatch, seen)
    checkpoints: list[int] = []
    original = jobs.ProgressReporter.advance

    def advance(self, n, **kw):
        checkpoints.append(kw["checkpoint_row"])
        return original(self, n, **kw)

    monkeypatch.setattr(jobs.ProgressReporter, "advance", advance)
    job = _run(_job(org, [_part(i) for i in range(1, 41)], batch_size=10))
    assert job.status == JobStatus.COMPLETED, job.error_message
    # batch 2 was written while batch 1 waited, on the other thread ...
    assert seen[0].startswith("wrote 12 ") and seen[1].startswith("wrote 2 ")
    assert len({s.split(" on ")[1] for s in seen}) == 2
    # ... and still committed after it: the checkpoint only moves forward
    assert checkpoints == [11, 21, 31, 41]
    assert (job.created_rows, job.checkpoint_row) == (40, 41)
    assert Component.objects.filter(organization=org).count() == 40


def test_two_writers_never_write_two_batches_that_share_a_part_at_once(org, settings, monkeypatch):
    """Row 14 (batch 2) repeats row 4's part (batch 1). Written side by side, batch 2's insert
    would hold that key while batch 1, slow, waits for it, and batch 2 waits for batch 1's
    commit: neither would end. Batch 2 goes to a writer only once batch 1 is in."""
    settings.COMPONENT_IMPORT_WRITERS = 2
    settings.IMPORT_WRITER_TIMEOUT_SECONDS = 20  # a hang fails the test instead
    seen: list[str] = []
    _slow_first_batch(monkeypatch, seen)
    rows = [_part(i) for i in range(1, 41)]
    rows[12] = _part(3, stock="777")
    job = _run(_job(org, rows, batch_size=10))
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert seen[0].startswith("wrote 2 ")  # batch 2 waited for batch 1
    assert (job.created_rows, job.updated_rows) == (39, 1)
    assert Component.objects.get(organization=org, mpn="BAS00003J").stock == 777  # the last row


def test_a_file_error_while_writers_are_busy_fails_at_once_and_keeps_a_whole_prefix(
    org, settings, monkeypatch
):
    """The file turns out unreadable while both writers are busy and batches wait in their
    queue. Stopping drops queued batches, so no batch after the one whose turn it is may
    commit. Before, a writer that took the batch after a dropped one waited for good for the
    dropped one's turn, holding its transaction: the job hung (the test's 180 s limit ended
    it), where it now fails in seconds with the file's own error."""
    import time

    from imports.pipeline import product_import
    from imports.pipeline.readers import FileReadError

    settings.COMPONENT_IMPORT_WRITERS = 2
    settings.IMPORT_WRITER_TIMEOUT_SECONDS = 20
    original_apply = ComponentWriter._apply

    def slow_apply(self, batch, *, replay=False):
        time.sleep(0.7)  # longer than the stop's wait for room in the queue
        return original_apply(self, batch, replay=replay)

    original_chunks = product_import.ValidatorProcess.chunks

    def chunks(self):
        for n, chunk in enumerate(original_chunks(self)):
            if n == 4:  # two batches being written, two waiting in the queue
                raise FileReadError("Row 42: the file ends inside a quoted field.")
            yield chunk

    monkeypatch.setattr(ComponentWriter, "_apply", slow_apply)
    monkeypatch.setattr(product_import.ValidatorProcess, "chunks", chunks)
    started = time.monotonic()
    job = _run(_job(org, [_part(i) for i in range(1, 101)], batch_size=10))
    assert time.monotonic() - started < 15
    assert job.status == JobStatus.FAILED
    assert job.error_message == "Row 42: the file ends inside a quoted field."
    stored = Component.objects.filter(organization=org).count()
    # what is in is exactly the batches up to the checkpoint, and counted once
    assert stored == job.created_rows == job.processed_rows == (job.checkpoint_row or 1) - 1
    assert stored % 10 == 0 and stored <= 40  # whole batches, none after a dropped one


def test_the_grouping_reads_a_fresh_catalogue_in_table_order_whatever_the_statistics(org):
    """On a first load the grouping starts while the helper's ANALYZE still runs: the planner's
    statistics predate the organization's rows (one row, it believes). Left to itself it probed
    an index for them and fetched a heap page per row in that index's order (the reversed MPN
    index: 7.7 s for 1M parts). The grouping is told to use a bitmap scan, and the planner's
    settings are back to their defaults for the updates after it."""
    from django.db import connection, transaction

    from enrichment import catalogue_import as ci

    parts = []
    for i in range(3000):
        part = Component(organization=org, manufacturer="Nexperia", mpn=f"BAS{i:05d}-Q1")
        part.set_keys()
        parts.append(part)
    Component.objects.bulk_create(parts)  # no ANALYZE since: the statistics predate them

    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        catalogue_loaded(org.id)
    find = seen.index(ci._FIND_SHARED)
    assert seen[find - 1] == ci._BITMAP_ONLY and seen[find + 1] == ci._PLANNER_DEFAULTS

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(ci._BITMAP_ONLY)
        select = ci._FIND_SHARED.split(" AS", 1)[1]
        cur.execute("EXPLAIN " + select, {"org": org.id})
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.execute(ci._PLANNER_DEFAULTS)
        cur.execute("SHOW enable_indexscan")
        back = cur.fetchone()[0]
    assert "Bitmap Heap Scan on enrichment_component" in plan, plan
    assert "Index Scan using" not in plan and "Index Only Scan" not in plan, plan
    assert "Seq Scan" not in plan, plan
    assert back == "on"


def test_the_flags_of_some_groups_are_read_group_by_group_whatever_the_statistics(org):
    """The statistics of a first load predate its parts (an organization of one part, the
    planner believes): joined freely, the flags' UPDATE read the organization's parts against
    every group asked (358 s for 2,000 groups in 1M parts). Each group is now probed from the
    normalized MPNs asked, and the flags that change are written by primary key."""
    from django.db import connection, transaction

    from enrichment import catalogue_import as ci

    parts = []
    for i in range(3000):
        part = Component(organization=org, manufacturer="Nexperia", mpn=f"BAS{i:05d}-Q1")
        part.set_keys()
        parts.append(part)
    parts.append(Component(organization=org, manufacturer="Nexperia", mpn="BAS00001.Q1"))
    parts[-1].set_keys()
    Component.objects.bulk_create(parts)  # no ANALYZE since: the statistics predate them

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(ci._INDEX_ONLY)
        cur.execute("EXPLAIN " + ci._SHARED_CHANGED, {"org": org.id, "norms": ["BAS00001Q1"]})
        plan = [row[0] for row in cur.fetchall()]
        cur.execute("EXPLAIN " + ci._SET_SHARED, [[1, 2], ["A1", "B2"], [True, False]])
        update = "\n".join(row[0] for row in cur.fetchall())
        cur.execute(ci._PLANNER_DEFAULTS_SOME)
    # every read of the catalogue is by organization and normalized MPN, under the groups asked
    conditions = [line for line in plan if "Index Cond" in line]
    assert len(conditions) == 2 and all("mpn_norm" in line for line in conditions), "\n".join(plan)
    assert not any("Seq Scan" in line or "Bitmap" in line for line in plan), plan
    scans = [line for line in plan if "Scan" in line]
    assert "Function Scan on unnest" in scans[0], plan  # the groups asked drive the plan
    assert "Index Scan using enrichment_component_pkey" in update, update

    catalogue_import.flag_some(org.id, ["BAS00001Q1", "BAS00002Q1"])
    assert _flags(org) == {"BAS00001-Q1": True, "BAS00001.Q1": True}


def test_a_flag_is_not_written_on_a_part_that_left_its_group_meanwhile(org):
    """The flags are written after the groups were read: a part renamed in between (the admin,
    which flags its own groups) keeps what its own flagging wrote."""
    from django.db import connection, transaction

    from enrichment import catalogue_import as ci

    parts = [Component(organization=org, manufacturer="Vishay", mpn=m) for m in ("AB-1", "AB.1")]
    for part in parts:
        part.set_keys()
    Component.objects.bulk_create(parts)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(ci._SHARED_CHANGED, {"org": org.id, "norms": ["AB1"]})
        changed = sorted(cur.fetchall())
        assert [(norm, shared) for _, norm, shared in changed] == [("AB1", True)] * 2
        Component.objects.filter(mpn="AB-1").update(mpn="CD-1", mpn_key="CD-1", mpn_norm="CD1")
        cur.execute(ci._SET_SHARED, [list(column) for column in zip(*changed, strict=True)])
    assert _flags(org) == {"AB.1": True}


@pytest.mark.parametrize("first_load", [True, False])
def test_one_mpn_key_is_one_part_whatever_its_letters_upper_case_to(org, first_load):
    """``straße`` and ``STRASSE`` have one MPN key, so from one maker they are one part: the
    later row updates the earlier, on a first load and on the staged path. The unique index
    leads with the normalized MPN, so that holds only because it is normalized from the key."""
    if not first_load:
        assert _run(_job(org, [_part(1)])).status == JobStatus.COMPLETED
    rows = [_part(2, mpn="straße", stock="5"), _part(3), _part(4, mpn="STRASSE", stock="9")]
    job = _run(_job(org, rows, batch_size=10))
    assert job.status == JobStatus.COMPLETED and job.errors == []
    (part,) = Component.objects.filter(organization=org, mpn_key="STRASSE")
    assert (part.mpn, part.mpn_norm, part.mpn_base) == ("STRASSE", "STRASSE", "STRASSE")
    assert part.stock == 9
    assert Component.objects.filter(organization=org).count() == (2 if first_load else 3)


def test_an_mpn_whose_key_is_longer_than_its_column_is_a_row_error(org):
    """The key is the MPN upper-cased, and can be longer than it: 60 ``ß`` are 120 ``S``. Such
    a row is refused with its reason; the batch around it goes in."""
    job = _run(_job(org, [_part(1), _part(2, mpn="ß" * 60), _part(3)]))
    assert job.status == JobStatus.COMPLETED
    assert (job.created_rows, job.failed_rows) == (2, 1)
    assert [e["row"] for e in job.errors] == [3]
    assert "is longer than 100 characters" in job.errors[0]["message"]
    assert job.errors[0]["message"].endswith("once upper-cased")  # 60 characters as written


def _flags(org) -> dict[str, bool]:
    return dict(
        Component.objects.filter(organization=org, mpn_norm_shared=True).values_list(
            "mpn", "mpn_norm_shared"
        )
    )


@pytest.fixture
def regroups(monkeypatch) -> list[int]:
    """The organizations whose whole catalogue a job grouped again (``catalogue_loaded``)."""
    seen: list[int] = []
    original = catalogue_import.catalogue_loaded

    def spy(organization_id: int) -> int:
        seen.append(organization_id)
        return original(organization_id)

    monkeypatch.setattr(catalogue_import, "catalogue_loaded", spy)
    return seen


def test_an_import_into_a_catalogue_flags_only_the_groups_it_added_to(org, regroups):
    """A first load flags its file's groups; a later import only the normalized MPNs of the
    parts it added, from the unique index: the flags come out the same."""
    rows = [_part(i) for i in range(1, 20)] + [_part(20, "Littelfuse", mpn="1.5SMC68CA")]
    first = _run(_job(org, rows, batch_size=10))
    assert first.status == JobStatus.COMPLETED and regroups == []
    # a flag the whole grouping would clear stays: the incremental pass does not read it
    Component.objects.filter(organization=org, mpn="BAS00002J").update(mpn_norm_shared=True)
    version = Catalogue.objects.get(organization=org).version

    again = [
        _part(3, stock="999"),  # an update: keys stay, no group changes
        _part(21, "Littelfuse", mpn="1.5SMC6.8CA"),  # joins 1.5SMC68CA's group
        _part(22, "Vishay", mpn="1.5smc68ca"),  # the same MPN from another maker: same key
        _part(23),
    ]
    second = _run(_job(org, again, batch_size=2))
    assert second.status == JobStatus.COMPLETED
    assert (second.created_rows, second.updated_rows) == (3, 1)
    assert regroups == []  # nor now
    assert _flags(org) == {
        "1.5SMC68CA": True,
        "1.5SMC6.8CA": True,
        "1.5smc68ca": True,
        "BAS00002J": True,  # untouched: not one of the groups the import added to
    }
    assert Catalogue.objects.get(organization=org).version == version + 1
    assert [s["stage"] for s in second.stages][-3:] == ["importing", "flagging", "done"]


def test_a_first_load_flags_its_file_s_groups_without_grouping_the_catalogue(org, regroups):
    """A catalogue that held nothing holds the file's parts alone: the groups the validator
    gathered from the file are all there are. The flags are those of a whole grouping."""
    rows = [
        _part(1, "Littelfuse", mpn="1.5SMC68CA"),
        *[_part(i) for i in range(2, 6)],
        _part(6, "Littelfuse", mpn="1.5SMC6.8CA"),  # a later batch: shares 1.5SMC68CA's
        _part(7, "Vishay", mpn="AB-1"),
        _part(8, "Vishay", mpn="AB.1"),  # two punctuated keys
        _part(9, "Vishay", mpn="XY-2"),
        _part(10, "Nexperia", mpn="xy-2"),  # the same key from another maker: not shared
        _part(11, mpn="EF-4", stock="lots"),  # a row error: never in the catalogue
        _part(12, mpn="EF4"),
    ]
    job = _run(_job(org, rows, batch_size=3))
    assert job.status == JobStatus.COMPLETED and (job.created_rows, job.error_count) == (11, 1)
    assert regroups == []
    flagged = {"1.5SMC68CA": True, "1.5SMC6.8CA": True, "AB-1": True, "AB.1": True}
    assert _flags(org) == flagged
    assert [s["stage"] for s in job.stages][-3:] == ["importing", "flagging", "done"]
    catalogue = Catalogue.objects.get(organization=org)
    assert catalogue.regrouped_at is not None and catalogue.regrouped_at <= job.finished_at
    catalogue_loaded(org.id)  # the whole grouping finds the same
    assert _flags(org) == flagged


@pytest.mark.parametrize("beside", ["admin save", "import still running"])
def test_a_first_load_that_met_another_change_groups_the_whole_catalogue(org, regroups, beside):
    """A part added elsewhere while a first load runs is not in the file's groups: an admin
    save (its own flagging, a new version) or another import that has committed a batch and
    not flagged yet (the version has not moved). The load groups the whole catalogue."""
    original = jobs.ProgressReporter.advance
    done = []

    def save_beside() -> None:  # another connection, committed at once
        try:
            part = Component(organization=org, manufacturer="Littelfuse", mpn="1.5SMC6.8CA")
            part.save()
            if beside == "admin save":
                catalogue_import.flag_some(org.id, [part.mpn_norm])
            else:
                ImportJob.objects.create(
                    organization=org,
                    kind=JobKind.COMPONENT_IMPORT,
                    status=JobStatus.PROCESSING,
                    created_rows=1,
                    original_filename="other.csv",
                )
        finally:
            connection.close()

    def advance(self, n, **kw):
        if not done:
            done.append(True)
            beside = threading.Thread(target=save_beside)
            beside.start()
            beside.join()
        return original(self, n, **kw)

    jobs.ProgressReporter.advance = advance
    try:
        rows = [_part(1, "Littelfuse", mpn="1.5SMC68CA"), *[_part(i) for i in range(2, 6)]]
        job = _run(_job(org, rows, batch_size=2))
    finally:
        jobs.ProgressReporter.advance = original
    assert job.status == JobStatus.COMPLETED and job.created_rows == 5
    assert regroups == [org.id]
    assert _flags(org) == {"1.5SMC68CA": True, "1.5SMC6.8CA": True}


def test_an_import_that_adds_too_many_parts_groups_the_whole_catalogue(org, regroups, monkeypatch):
    monkeypatch.setattr(catalogue_import, "NEW_NORMS_MAX", 3)
    assert _run(_job(org, [_part(1)])).status == JobStatus.COMPLETED
    rows = [_part(i) for i in range(2, 8)] + [_part(8, "Littelfuse", mpn="1.5SMC68CA")]
    rows.append(_part(9, "Littelfuse", mpn="1.5SMC6.8CA"))
    assert _run(_job(org, rows, batch_size=4)).status == JobStatus.COMPLETED
    assert regroups == [org.id]
    assert _flags(org) == {"1.5SMC68CA": True, "1.5SMC6.8CA": True}


def test_a_resumed_import_groups_the_whole_catalogue(org, regroups):
    """An attempt that goes on after an earlier one's batches does not know which parts those
    added (the earlier worker may have died before its flagging): it groups everything."""
    assert _run(_job(org, [_part(1, "Littelfuse", mpn="1.5SMC68CA")])).status == "completed"
    rows = [_part(2, "Littelfuse", mpn="1.5SMC6.8CA")] + [_part(i) for i in range(3, 31)]
    job = _job(org, rows, batch_size=10)
    job = _run_cancelled_in_first_batch(job)
    assert job.status == JobStatus.CANCELLED and job.checkpoint_row
    # as if that attempt's worker had died before its flagging
    Component.objects.filter(organization=org).update(mpn_norm_shared=False)
    assert regroups == []

    retried = _run(import_job_retry(job=job))
    assert retried.status == JobStatus.COMPLETED and retried.attempt == 2
    assert regroups == [org.id]
    assert _flags(org) == {"1.5SMC68CA": True, "1.5SMC6.8CA": True}


def test_an_import_after_one_that_never_flagged_groups_the_whole_catalogue(org, regroups):
    """An earlier import that added parts and then failed (an internal error, a lost worker)
    never ran its flagging, and nobody resumes it: the next import cannot know which groups
    that one added to, so it groups everything; the one after that is incremental again."""
    assert _run(_job(org, [_part(1, "Littelfuse", mpn="1.5SMC68CA")])).status == "completed"
    assert regroups == []  # a first load: its file's groups
    # what the failed import left: a part that shares 1.5SMC68CA's key, not flagged
    make = _run(_job(org, [_part(2, "Littelfuse", mpn="1.5SMC6.8CA")]))
    Component.objects.filter(organization=org).update(mpn_norm_shared=False)
    ImportJob.objects.filter(pk=make.pk).update(status=JobStatus.FAILED, finished_at=timezone.now())
    regroups.clear()

    assert _run(_job(org, [_part(3)])).status == JobStatus.COMPLETED
    assert regroups == [org.id]
    assert _flags(org) == {"1.5SMC68CA": True, "1.5SMC6.8CA": True}

    assert _run(_job(org, [_part(4)])).status == JobStatus.COMPLETED
    assert regroups == [org.id]  # the failed one is older than that grouping now


def test_a_grouping_that_fails_does_not_count_as_one(org, monkeypatch):
    """``regrouped_at`` says the flags hold for every part committed before it: it is written
    with the new version, once the whole grouping has finished, and not by one that failed."""
    assert _run(_job(org, [_part(1)])).status == JobStatus.COMPLETED
    done = Catalogue.objects.get(organization=org).regrouped_at
    assert done is not None and done <= timezone.now()
    monkeypatch.setattr(catalogue_import, "_FLAG_SHARED", "SELECT 1 / 0")
    with pytest.raises(DataError):
        catalogue_loaded(org.id)
    assert Catalogue.objects.get(organization=org).regrouped_at == done
