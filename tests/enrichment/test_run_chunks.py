"""The job's chunked run on four connections (committed data: the helpers' connections see
it) stores what the one-connection matcher decides, chunk by chunk, in order."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from enrichment import selectors
from enrichment.enrich import LineInput, Matcher, run_chunks
from enrichment.models import Bom, BomLine
from tests.fixtures.enrichment import PARTS, make_component

pytestmark = pytest.mark.django_db(transaction=True)

WRITTEN = [
    ("LM358D", "TI", 250),
    ("LM358D", "", 1),
    ("1.5SMC-68CA", "", 1),
    ("BAS16J,115", "Nexperia", 5000),
    ("RC0603FR-0733KL", "", 10),
    ("XC0603FR-0710KL", "", 10),
    ("ZZZ-NOT-THERE-9", "", 1),
    ("LT1761ES5-5#TRPBF", "", 100),
]


def test_the_four_connection_run_stores_what_one_connection_decides(org):
    from enrichment.catalogue_import import catalogue_loaded

    for maker, mpn, life, stock, price, breaks in PARTS:
        make_component(org, maker, mpn, life, stock, price, breaks)
    catalogue_loaded(org.id)
    bom = Bom.objects.create(organization=org, name="four connections")
    rows = WRITTEN * 4  # 32 lines, chunks of 5: the last one short
    BomLine.objects.bulk_create(
        BomLine(bom=bom, line_number=n + 2, mpn=mpn, manufacturer=maker, quantity=qty)
        for n, (mpn, maker, qty) in enumerate(rows)
    )
    lines = [
        LineInput(*row)
        for row in bom.lines.order_by("line_number").values_list(
            "id", "mpn", "manufacturer", "quantity", "dnp"
        )
    ]

    def matcher():
        return Matcher(organization_id=org.id, aliases=selectors.alias_map(organization_id=org.id))

    assert not connection.in_atomic_block  # the helper connections' path
    chunks = list(run_chunks(matcher(), lines, size=5, version=3))
    assert [len(c) for c in chunks] == [5] * 6 + [2]
    got = [r for chunk in chunks for r in chunk]
    assert [r.line.id for r in got] == [line.id for line in lines]

    expected = {r.line.id: r for r in matcher().match(lines)}
    stored = {line.id: line for line in bom.lines.all()}
    for r in got:
        want = expected[r.line.id].decision
        assert (r.decision.status, r.decision.tier) == (want.status, want.tier)
        assert [c.id for c in r.decision.candidates] == [c.id for c in want.candidates]
        line = stored[r.line.id]
        assert (line.match_status, line.match_tier, line.catalogue_version) == (
            want.status,
            want.tier,
            3,
        )
        assert line.component_id == (want.component.id if want.component else None)
        assert [c["component_id"] for c in line.candidates] == [c.id for c in want.candidates]
    statuses = {line.mpn: line.match_status for line in stored.values()}
    assert statuses["XC0603FR-0710KL"] == "ambiguous"  # proposed on a helper connection
    assert statuses["ZZZ-NOT-THERE-9"] == "not_found"


def _clients() -> set[int]:
    """The other client backends of this database (autovacuum and the like left out)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cur.fetchall()}


def _helpers_gone(before: set[int]) -> bool:
    """Whether every client backend the run opened has gone (a backend exits just after its
    client hangs up: wait a little for it)."""
    deadline = time.monotonic() + 5
    while not _clients() <= before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _bom_lines(org, rows: int) -> tuple[Bom, list[LineInput]]:
    for maker, mpn, life, stock, price, breaks in PARTS:
        make_component(org, maker, mpn, life, stock, price, breaks)
    bom = Bom.objects.create(organization=org, name="connections")
    BomLine.objects.bulk_create(
        BomLine(bom=bom, line_number=n + 1, mpn=mpn, manufacturer=maker, quantity=qty)
        for n, (mpn, maker, qty) in enumerate((WRITTEN * 5)[:rows])
    )
    lines = [
        LineInput(*row)
        for row in bom.lines.order_by("line_number").values_list(
            "id", "mpn", "manufacturer", "quantity", "dnp"
        )
    ]
    return bom, lines


@pytest.mark.parametrize("rows", [1, 7, 40], ids=["one chunk", "two chunks", "eight chunks"])
def test_a_run_closes_every_helper_connection_it_opened(org, rows):
    """Each helper thread opens its own connection (one proposing, two storing); all are
    closed when the run ends, however many of the storing threads ever got a chunk."""
    bom, lines = _bom_lines(org, rows)
    before = _clients()
    matcher = Matcher(organization_id=org.id, aliases={})
    stored = [r for chunk in run_chunks(matcher, lines, size=5, version=1) for r in chunk]
    assert len(stored) == rows
    assert not bom.lines.filter(match_status="pending").exists()
    assert _helpers_gone(before)


def test_a_failed_store_reaches_the_caller_and_every_helper_connection_closes(org, monkeypatch):
    """The second chunk's store fails while the other storing thread is busy with the first
    (held until the failure is in): that error reaches the caller, the first chunk is stored,
    and no helper connection is left open."""
    from enrichment import enrich

    bom, lines = _bom_lines(org, 10)
    failing = {lines[5].id}
    failed = threading.Event()
    write = enrich.write_results

    def write_results(results, *, catalogue_version, since=None):
        if failing & {r.line.id for r in results}:
            failed.set()
            raise RuntimeError("storing broke")
        failed.wait(10)  # the other storer is still at work when the error goes up
        return write(results, catalogue_version=catalogue_version, since=since)

    monkeypatch.setattr(enrich, "write_results", write_results)
    before = _clients()
    matcher = Matcher(organization_id=org.id, aliases={})
    with pytest.raises(RuntimeError, match="storing broke"):
        list(run_chunks(matcher, lines, size=5, version=1))
    assert _helpers_gone(before)
    stored = set(bom.lines.exclude(match_status="pending").values_list("id", flat=True))
    assert stored == {line.id for line in lines[:5]}


def test_a_run_stopped_after_its_first_chunk_closes_every_helper_connection(org):
    """A cancelled run: the caller stops reading after the first chunk while later chunks
    are being matched, proposed and stored; what was not begun is not stored, and no helper
    connection is left open."""
    bom, lines = _bom_lines(org, 40)
    before = _clients()
    matcher = Matcher(organization_id=org.id, aliases={})
    run = run_chunks(matcher, lines, size=5, version=1)
    first = next(run)
    run.close()
    assert _helpers_gone(before)
    assert len(first) == 5
    assert bom.lines.exclude(match_status="pending").count() < len(lines)


def test_no_lines_yield_no_chunks_on_the_helper_connections_path(org):
    matcher = Matcher(organization_id=org.id, aliases={})
    assert not connection.in_atomic_block
    assert list(run_chunks(matcher, [], size=5, version=1)) == []


def test_a_failed_proposal_stops_the_run_and_its_chunk_is_not_stored(org, monkeypatch):
    """The proposals run on their own connection; their error reaches the caller, and the
    chunk whose proposals failed is never stored (the store waits for them)."""
    for maker, mpn, life, stock, price, breaks in PARTS:
        make_component(org, maker, mpn, life, stock, price, breaks)
    bom = Bom.objects.create(organization=org, name="proposals fail")
    BomLine.objects.bulk_create(
        BomLine(bom=bom, line_number=n + 2, mpn=mpn, manufacturer=maker, quantity=qty)
        for n, (mpn, maker, qty) in enumerate(WRITTEN * 2)
    )
    lines = [
        LineInput(*row)
        for row in bom.lines.order_by("line_number").values_list(
            "id", "mpn", "manufacturer", "quantity", "dnp"
        )
    ]

    def similar(self, cur, keys):
        raise RuntimeError("proposals broke")

    monkeypatch.setattr(Matcher, "similar", similar)
    matcher = Matcher(organization_id=org.id, aliases={})
    with pytest.raises(RuntimeError, match="proposals broke"):
        list(run_chunks(matcher, lines, size=5, version=1))
    assert not bom.lines.exclude(match_status="pending").exists()


def test_a_run_leaves_its_connection_waiting_for_commit_flushes_again(org):
    from enrichment.enrich import relaxed_commits

    def setting() -> str:
        with connection.cursor() as cur:
            cur.execute("SHOW synchronous_commit")
            return cur.fetchone()[0]

    with connection.cursor() as cur:
        # on, whatever the test database says (it commits without waiting, for speed)
        cur.execute("SET synchronous_commit = on")
    with relaxed_commits():
        assert setting() == "off"
    assert setting() == "on"
