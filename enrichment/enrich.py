"""Set-based matching around the pure tiers of ``matching.py``: one SQL statement per tier for a
whole chunk of lines (the exact and normalized tiers share one; the lines' keys go in as arrays
and are joined against the catalogue's B-tree indexes), never a query per line; one UPDATE
writes a chunk's results.
"""

from __future__ import annotations

import gc
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from threading import Barrier
from typing import NamedTuple

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction

from imports.pipeline.copy_text import NULL, escape

from . import matching
from .matching import Candidate, Decision, Status, Tier

_COMPONENT_COLUMNS = """c.id, c.manufacturer, c.manufacturer_key, c.mpn, c.lifecycle, c.stock,
    c.unit_price, c.price_breaks, c.currency, c.datasheet_url"""
# The lines' keys go in as one JSON array (json.dumps of a list is one C call; psycopg binds a
# Python list element by element), numbered by ORDINALITY: row n is the n-th key asked about.
# The exact and the normalized tiers share one statement: every part whose normalized MPN is the
# line's (the catalogue's unique index leads with it, ``models.Component``), with its MPN key.
# The exact tier takes the parts whose MPN key is the line's too (the normalized MPN is a
# function of the MPN key, so they are among these); the normalized tier, for a line the exact
# tier left, all of them. A second statement for the normalized tier probed the same index
# again for the lines the first left.
_BY_NORM = f"""
SELECT l.n, {_COMPONENT_COLUMNS}, c.mpn_key
FROM json_array_elements_text(%s::json) WITH ORDINALITY AS l(key, n)
JOIN enrichment_component c ON c.organization_id = %s AND c.mpn_norm = l.key
"""
# The packaging tier: a part's normalized MPN without its packaging suffix (``mpn_base``) is a
# prefix of its normalized MPN, so the parts whose base is the line's key are found in the
# range of normalized MPNs that start with it, in the unique index that leads with them (its
# pattern ops compare byte-wise, and no normalized MPN has a byte above chr(127)), and only
# those rows are checked for their base. No index on ``mpn_base``: it cost the component import
# 1.6 s per million parts, and on that catalogue the benchmark BOM's 10,000 keys took 55 ms by
# the range against 55 ms by such an index, with the same rows (measured side by side). A key of
# one or two characters would range over a large part of the catalogue; it is looked up as it is.
# Each key's range is its own subquery (OFFSET 0 keeps the planner from flattening it into a
# join): a range's rows cannot be estimated, and for an organization of 20k parts the planner
# read the organization's whole catalogue once and compared every part with every key (20,040
# parts x 500 keys: 505 ms, EXPLAIN ANALYZE; a 2,000-line BOM's packaging tier ran at 1,800
# lines/s), where the ranges take a few index pages each.
_BY_BASE = f"""
SELECT l.n, {_COMPONENT_COLUMNS}
FROM json_array_elements_text(%s::json) WITH ORDINALITY AS l(key, n)
CROSS JOIN LATERAL (
    SELECT {_COMPONENT_COLUMNS} FROM enrichment_component c
    WHERE c.organization_id = %s
        AND c.mpn_norm::text ~>=~ l.key
        AND c.mpn_norm::text
            ~<=~ (CASE WHEN length(l.key) > 2 THEN l.key || chr(127) ELSE l.key END)
        AND c.mpn_base = l.key
    OFFSET 0
) c
"""
# (key, maker) pairs in one array: two arrays joined on their ordinality would be a nested loop
# over both with hash and merge joins off (``_PLAN_SETTINGS``)
_LEARNED = f"""
SELECT l.n, {_COMPONENT_COLUMNS}
FROM json_array_elements(%s::json) WITH ORDINALITY AS l(pair, n)
JOIN enrichment_learnedmatch m ON m.organization_id = %s AND m.mpn_key = l.pair->>0
     AND m.manufacturer_key = l.pair->>1
JOIN enrichment_component c ON c.id = m.component_id AND c.organization_id = m.organization_id
"""
_ANY_LEARNED = "SELECT EXISTS (SELECT 1 FROM enrichment_learnedmatch WHERE organization_id = %s)"
# Trigram similarity only proposes. A trigram index cannot find a line's look-alikes in a large
# catalogue fast (measured on 1M parts: GIN `%%` about 150 ms a line, GiST `<->` KNN about 190 ms
# a line: part numbers share their trigrams with thousands of others). The look-alikes a
# mistyped or incomplete part number has are the catalogue keys that sort next to it, read
# forwards (same beginning: an edit near the end, a missing or extra suffix) or backwards (same
# ending: an edit near the start, a missing or extra prefix). So each line takes its NEIGHBOURS
# nearest keys on each side in both orders (four short B-tree range scans on the pattern-ops
# indexes, byte-wise), scores them by pg_trgm similarity and proposes the best MAX_CANDIDATES at
# or above ENRICHMENT_SIMILARITY. There is no trigram index: a GIN index served only the few
# lines (at most 50 a chunk) that found no neighbour that similar, and maintaining it cost the
# component import a third of its time (1M parts: 28 s -> 19 s without it, measured). A
# look-alike that differs from the line at both ends is not proposed; the line is not found.
# The scans return normalized MPNs only, and every part that has a look-alike one at or above the
# threshold is a candidate: the scans then need no heap page once the table is all-visible
# (index-only scans of the unique index forwards and of ``mpn_rev`` backwards), only the parts
# proposed are read (the trigram tier took 0.22 s instead of 0.25 s, 6 alternating pairs on 1M
# parts, same results, for the forward scans; 0.176 s instead of 0.214 s, medians of 6, for the
# backward ones once they read a column instead of an expression index),
# and a look-alike that several makers catalogue is proposed from each of them, not only from
# the four index rows nearest the line; when more parts than MAX_CANDIDATES are equally
# similar, active ones with more stock are kept (``matching.closest``).
NEIGHBOURS = 4
_NEAR = """
(SELECT {norm} AS mpn_norm FROM enrichment_component c0
 WHERE c0.organization_id = %(org)s AND {expr} {cmp} {key}
 ORDER BY {expr} USING {order} LIMIT {n})"""
_SIMILAR_BY_NEIGHBOURS = f"""
SELECT l.n, s.*
FROM json_array_elements_text(%(keys)s::json) WITH ORDINALITY AS l(key, n)
CROSS JOIN LATERAL (
    SELECT {_COMPONENT_COLUMNS}, v.score FROM (
        SELECT u.mpn_norm, similarity(u.mpn_norm, l.key) AS score FROM ({
    " UNION ".join(
        _NEAR.format(norm=norm, expr=expr, cmp=cmp, key=key, order=order, n=NEIGHBOURS)
        for norm, expr, key in (
            ("c0.mpn_norm", "c0.mpn_norm::text", "l.key"),
            ("reverse(c0.mpn_rev)", "c0.mpn_rev::text", "reverse(l.key)"),
        )
        for cmp, order in (("~>=~", "~<~"), ("~<~", "~>~"))
    )
}
        ) u OFFSET 0) v
    JOIN enrichment_component c ON c.organization_id = %(org)s AND c.mpn_norm = v.mpn_norm
    WHERE v.score >= %(threshold)s
    ORDER BY v.score DESC, c.lifecycle <> 'active', c.stock DESC, c.id
    LIMIT {matching.MAX_CANDIDATES}) s
"""


def switched_off(*knobs: str) -> tuple[str, str]:
    """The statements that turn the planner's ``knobs`` off for a transaction, and back to
    their defaults (a caller's outer transaction may go on after the block)."""
    return (
        "; ".join(f"SET LOCAL {knob} = off" for knob in knobs),
        "; ".join(f"SET LOCAL {knob} TO DEFAULT" for knob in knobs),
    )


# each statement of a chunk probes the catalogue's B-trees line by line (a nested loop), never
# a hash or merge join that would read the whole organization
_PLAN_SETTINGS, _PLAN_DEFAULTS = switched_off(
    "enable_hashjoin", "enable_mergejoin", "enable_seqscan"
)

# A chunk's results go in by COPY to a session temp table and one UPDATE joined on the line id:
# binding fourteen arrays of 2,000 values took psycopg longer than the UPDATE itself. The UPDATE
# probes the lines' primary key row by row (``_PLAN_SETTINGS``): the temp table has no
# statistics, and on a lines table of 22k rows the planner hashed the whole table for each
# chunk (a sequential scan of every BOM's lines, 5,500 pages, seen in EXPLAIN), a plan that
# grows with every BOM stored.
_RESULTS = "intake_bomline_results"
_CREATE_RESULTS = f"""
CREATE TEMP TABLE IF NOT EXISTS {_RESULTS} (
    id bigint, status text, tier text, confidence float8, component_id bigint,
    candidates jsonb, lifecycle text, stock bigint, unit_price numeric, extended_price numeric,
    currency text, datasheet_url text, warnings jsonb, notes jsonb
) ON COMMIT DELETE ROWS
"""
_COPY_RESULTS = f"COPY {_RESULTS} FROM STDIN"
_WRITE = f"""
UPDATE enrichment_bomline b SET
    match_status = r.status, match_tier = r.tier, confidence = r.confidence,
    component_id = r.component_id, candidates = r.candidates, lifecycle = r.lifecycle,
    stock = r.stock, unit_price = r.unit_price, extended_price = r.extended_price,
    currency = r.currency, datasheet_url = r.datasheet_url, warnings = r.warnings,
    notes = r.notes, enriched_at = now(), catalogue_version = %s
FROM {_RESULTS} r
WHERE b.id = r.id AND NOT coalesce(b.match_tier = 'manual' AND b.enriched_at >= %s, false)
"""
# An operator's resolution made after the run was asked for is kept: the run read the line
# before it, and writing its own outcome over the operator's would lose the choice.
_RESOLVED_MEANWHILE = """
SELECT id FROM enrichment_bomline
WHERE id = ANY(%s) AND match_tier = 'manual' AND enriched_at >= %s
"""
# a run with no start of its own (a test, a caller): every line is written
_NEVER = datetime(9999, 1, 1, tzinfo=UTC)


# A run commits each chunk's results and the job's progress, three commits a chunk; waiting for
# each one's WAL flush is waiting on the disk for results that can be computed again. A database
# crash loses at most the last few hundred ms of them, together with the job's progress that
# counted them (WAL order), and a resumed or repeated run redoes those lines. The run's terminal
# commit (completed, failed, cancelled) is an ordinary one: its flush also makes every earlier
# commit durable before a client is told the run ended.
_RELAXED_LOCAL = "SET LOCAL synchronous_commit = off"


@contextmanager
def relaxed_commits() -> Iterator[None]:
    """This connection's commits do not wait for their WAL flush until the block ends; then
    the setting it had is back."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT current_setting('synchronous_commit'), "
            "set_config('synchronous_commit', 'off', false)"
        )
        before = cur.fetchone()[0]
    try:
        yield
    finally:
        # a broken connection is discarded anyway; an error here must not hide the run's own
        if connection.connection is not None and not connection.needs_rollback:
            with suppress(DatabaseError), connection.cursor() as cur:
                cur.execute("SELECT set_config('synchronous_commit', %s, false)", [before])


class LineInput(NamedTuple):
    """A BOM line as the tiers read it (a tuple: 10,000 of them are built from the lines'
    rows in a third of the time a frozen dataclass took, before matching can begin)."""

    id: int
    mpn: str
    manufacturer: str
    quantity: int
    dnp: bool
    problem: str = ""  # why the file's row could not be read as a line: it stays an error
    line_number: int = 0  # the run's checkpoint: a resumed attempt goes on after it


@dataclass(slots=True)
class LineResult:
    line: LineInput
    decision: Decision
    unit_price: Decimal | None = None
    extended_price: Decimal | None = None
    warnings: tuple[str, ...] = ()


_decode = json.JSONDecoder().raw_decode


def _breaks(raw) -> tuple[tuple[int, Decimal], ...]:
    if isinstance(raw, str):  # Django leaves jsonb to be parsed by the caller
        raw = _decode(raw)[0]  # jsonb's text has no surrounding blanks
    if not raw:  # none, or a jsonb null
        return ()
    return tuple([(int(q), Decimal(p if isinstance(p, str) else str(p))) for q, p in raw])


def _fetch(
    cur, sql: str, params, asked: Sequence[int], score: float | None = None, *, keyed: bool = False
) -> dict[int, list]:
    """Run a candidate query whose first column numbers the key asked (1 = ``asked[0]``) and
    whose others are ``_COMPONENT_COLUMNS``, then the score when ``score`` is None. ``keyed``
    (with a ``score``): the last column is the part's MPN key, and each part comes as (its MPN
    key, the part)."""
    cur.execute(sql, params)
    found: dict[int, list] = defaultdict(list)
    rows = cur.fetchall()
    for n, id_, maker, maker_key, mpn, life, stock, price, raw, currency, url, *rest in rows:
        similarity = score if score is not None else float(rest[0])
        part = Candidate(
            id_, maker, maker_key, mpn, life, stock, price, _breaks(raw), similarity, currency, url
        )
        found[asked[n - 1]].append((rest[0], part) if keyed else part)
    return found


class Matcher:
    """Matches chunks of one organization's BOM lines; keeps time and lines per tier."""

    def __init__(self, *, organization_id: int, aliases: dict[str, str]) -> None:
        self.org = organization_id
        self.aliases = aliases
        self.seconds: dict[str, float] = defaultdict(float)
        self.lines: dict[str, int] = defaultdict(int)  # decided in each tier
        self.examined: dict[str, int] = defaultdict(int)  # lines each tier looked at
        self.any_learned: bool | None = None  # whether the organization has a learned choice
        self._makers: dict[str, str] = {}  # a line's manufacturer -> its key (``maker_key``)
        # how long this thread waited on the helpers, outside the tiers' own time: for a chunk
        # to be stored before matching on (``storing``), and for them to close (``closing``)
        self.waited: dict[str, float] = defaultdict(float)

    def maker_key(self, name: str) -> str:
        """The canonical key of a line's manufacturer (through the aliases), worked out once
        per name a run meets: a BOM names a few dozen makers over thousands of lines."""
        known = self._makers.get(name)
        if known is None:
            key = matching.manufacturer_key(name)
            known = matching.manufacturer_key(self.aliases.get(key, name)) if key else ""
            self._makers[name] = known
        return known

    def match(self, lines: Sequence[LineInput]) -> list[LineResult]:
        """Decide every line of ``lines``: one statement per tier for all of them (the exact
        and normalized tiers share one)."""
        results, todo = self.match_keys(lines)
        if todo:
            with connection.cursor() as wrapper:
                found = self.similar(
                    wrapper.cursor, [matching.normalize_mpn(lines[i].mpn) for i in todo]
                )
            self.propose(lines, todo, found, results)
        return [results[i] for i in range(len(lines))]

    def match_keys(self, lines: Sequence[LineInput]) -> tuple[dict[int, LineResult], list[int]]:
        """The key tiers and the learned one for ``lines``: the results they decided (by the
        line's position) and the positions left for the trigram proposals."""
        results: dict[int, LineResult] = {}
        todo: list[int] = []
        # each line's exact key and normalized key, computed once (the normalized one is of
        # the exact one: ``matching.normalize_mpn``)
        exact: dict[int, tuple[str, str]] = {}
        for i, line in enumerate(lines):
            if line.problem:
                results[i] = LineResult(line, Decision(Status.ERROR, notes=[line.problem]))
            elif line.dnp:
                results[i] = LineResult(line, Decision(Status.SKIPPED, notes=["Not populated."]))
            else:
                key = matching.exact_key(line.mpn)
                norm = matching.normalize_mpn(key)
                if not norm:
                    results[i] = LineResult(
                        line, Decision(Status.NOT_FOUND, notes=["The line gives no part number."])
                    )
                else:
                    exact[i] = (norm, key)
                    todo.append(i)
        makers = {i: self.maker_key(lines[i].manufacturer) for i in todo}
        # a line whose key a tier found only from other makers goes on to the next tiers (the
        # packaging tier may find it from the line's maker); when none decides, that first
        # outcome stands: ambiguous, with those parts as candidates and a note
        held: dict[int, LineResult] = {}
        with connection.cursor() as wrapper:
            cur = wrapper.cursor
            cur.execute(_PLAN_SETTINGS)
            if todo:
                started = time.perf_counter()
                self.examined[Tier.EXACT] += len(todo)
                keys = json.dumps([exact[i][0] for i in todo])
                score = matching.CONFIDENCE[Tier.EXACT]
                by_norm = _fetch(cur, _BY_NORM, [keys, self.org], todo, score, keyed=True)
                found = {
                    i: [part for key, part in parts if key == exact[i][1]]
                    for i, parts in by_norm.items()
                }
                todo = self._decide(Tier.EXACT, lines, todo, found, makers, results, held)
                self.seconds[Tier.EXACT] += time.perf_counter() - started
            if todo:  # the same parts, for the lines the exact tier left
                started = time.perf_counter()
                self.examined[Tier.NORMALIZED] += len(todo)
                score = matching.CONFIDENCE[Tier.NORMALIZED]
                found = {
                    i: [part._replace(score=score) for _, part in by_norm[i]]
                    for i in todo
                    if i in by_norm
                }
                todo = self._decide(Tier.NORMALIZED, lines, todo, found, makers, results, held)
                self.seconds[Tier.NORMALIZED] += time.perf_counter() - started
            if todo:
                started = time.perf_counter()
                self.examined[Tier.PACKAGING] += len(todo)
                keys = json.dumps([matching.packaging_key(lines[i].mpn) for i in todo])
                found = _fetch(
                    cur, _BY_BASE, [keys, self.org], todo, matching.CONFIDENCE[Tier.PACKAGING]
                )
                todo = self._decide(Tier.PACKAGING, lines, todo, found, makers, results, held)
                self.seconds[Tier.PACKAGING] += time.perf_counter() - started
            # An operator's earlier choice also settles a line the key tiers left ambiguous:
            # that is the very line an operator resolves.
            ambiguous = [i for i, r in results.items() if r.decision.status == Status.AMBIGUOUS]
            asked = sorted([*todo, *ambiguous])
            if asked and self._learns(cur):
                started = time.perf_counter()
                self.examined[Tier.LEARNED] += len(asked)
                found = _fetch(
                    cur,
                    _LEARNED,
                    [
                        json.dumps([[exact[i][1], makers[i]] for i in asked]),
                        self.org,
                    ],
                    asked,
                    matching.CONFIDENCE[Tier.LEARNED],
                )
                if found:
                    learned = [i for i in asked if i in found]
                    self._decide(
                        Tier.LEARNED, lines, learned, found, dict.fromkeys(learned, ""), results
                    )
                    todo = [i for i in todo if i not in found]
                self.seconds[Tier.LEARNED] += time.perf_counter() - started
        if held:
            for i in todo:
                if i in held:
                    results[i] = held[i]
                    self.lines[held[i].decision.tier] += 1
            todo = [i for i in todo if i not in held]
        for result in results.values():
            _price(result)
        return results, todo

    def _learns(self, cur) -> bool:
        """Whether the organization has any learned choice, asked once per matcher (a run): an
        organization whose operators never resolved a line skips the tier's statement, 14 ms
        of a 10,000-line run. A choice made while a run is under way serves the next run."""
        if self.any_learned is None:
            cur.execute(_ANY_LEARNED, [self.org])
            self.any_learned = cur.fetchone()[0]
        return self.any_learned

    def similar(self, cur, keys: Sequence[str]) -> dict[int, list[Candidate]]:
        """Trigram proposals for normalized ``keys`` (a plain psycopg cursor, this connection's
        or another's): candidates by the key's position in ``keys``. Reads the catalogue only,
        so it may run beside the other tiers on a second connection."""
        started = time.perf_counter()
        threshold = settings.ENRICHMENT_SIMILARITY
        usable = [n for n, key in enumerate(keys) if len(key) >= 3]  # shorter: no trigram
        found: dict[int, list[Candidate]] = {}
        if usable:
            cur.execute(_PLAN_SETTINGS)
            params = {
                "keys": json.dumps([keys[n] for n in usable]),
                "org": self.org,
                "threshold": threshold,
            }
            found.update(_fetch(cur, _SIMILAR_BY_NEIGHBOURS, params, usable))
        self.seconds[Tier.TRIGRAM] += time.perf_counter() - started
        self.examined[Tier.TRIGRAM] += len(keys)
        return found

    def propose(
        self,
        lines: Sequence[LineInput],
        todo: Sequence[int],
        found: dict[int, list[Candidate]],
        results: dict[int, LineResult],
    ) -> None:
        """The trigram tier's outcome for the lines at ``todo`` (``found`` by their position in
        ``todo``, as ``similar`` numbers them): ambiguous with the proposals, or not found."""
        for n, i in enumerate(todo):
            line = lines[i]
            results[i] = LineResult(line, matching.decide_similar(found.get(n, []), line.quantity))
        self.lines[Tier.TRIGRAM] += len(todo)

    def _decide(
        self,
        tier: str,
        lines: Sequence[LineInput],
        todo: list[int],
        found: dict[int, list[Candidate]],
        makers: dict[int, str],
        results: dict[int, LineResult],
        held: dict[int, LineResult] | None = None,
    ) -> list[int]:
        """Apply ``tier``'s decision to each line of ``todo``; returns the undecided ones. With
        ``held``, a line found only from other makers is undecided too, its first such outcome
        kept there."""
        left = []
        for i in todo:
            line = lines[i]
            decision = matching.decide(
                tier, found.get(i, ()), manufacturer=makers[i], quantity=line.quantity, mpn=line.mpn
            )
            if decision is None or (held is not None and decision.other_makers):
                if decision is not None:
                    held.setdefault(i, LineResult(line, decision))
                left.append(i)
            else:
                if i in results:  # a learned choice replaces an ambiguous outcome
                    self.lines[results[i].decision.tier] -= 1
                results[i] = LineResult(line, decision)
                self.lines[tier] += 1
        return left


def _price(result: LineResult) -> None:
    c = result.decision.component
    if c is None:
        return
    qty = result.line.quantity
    result.unit_price = unit = matching.unit_price_at(qty, c.price_breaks, c.unit_price)
    result.extended_price = matching.extended_price(unit, qty)
    result.warnings = tuple(matching.warnings_for(c, qty, unit))


def _json_field(values: Sequence[str]) -> str:
    """A JSON array of strings as a COPY text field: ``json.dumps`` leaves no tab, newline or
    carriage return in its text (it writes them as escapes), so only its backslashes double."""
    return json.dumps(values).replace("\\", "\\\\") if values else "[]"


def _result_line(r: LineResult) -> str:
    """One line of ``_RESULTS``' COPY text for a line's result. Built here as text: psycopg's
    ``write_row`` adapted the fourteen fields one by one, the storing threads' largest share of
    the GIL (measured with py-spy). Ids, numbers, statuses, tiers and the candidates' JSON need
    no escaping; the part's text fields, the warnings and the notes do."""
    d, c = r.decision, r.decision.component
    candidates = (
        "["
        + ", ".join(
            [f'{{"component_id": {x.id}, "score": {round(x.score, 3)!r}}}' for x in d.candidates]
        )
        + "]"
        if d.candidates
        else "[]"
    )
    if c is None:
        part = (NULL, candidates, "", NULL)
        shop = ("", "")
    else:
        stock = NULL if c.stock is None else str(c.stock)
        part = (str(c.id), candidates, escape(c.lifecycle), stock)
        shop = (escape(c.currency), escape(c.datasheet_url))
    return (
        "\t".join(
            (
                str(r.line.id),
                d.status,
                d.tier,
                repr(round(d.confidence, 4)),
                *part,
                NULL if r.unit_price is None else str(r.unit_price),
                NULL if r.extended_price is None else str(r.extended_price),
                *shop,
                _json_field(r.warnings),
                _json_field(d.notes),
            )
        )
        + "\n"
    )


def write_results(
    results: Sequence[LineResult], *, catalogue_version: int, since: datetime | None = None
) -> set[int]:
    """Store a chunk's results: COPY to a temp table, one UPDATE. Call inside a transaction.
    A line an operator resolved at or after ``since`` (when the run was asked for) keeps that
    resolution; returns the ids of such lines."""
    if not results:
        return set()
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        cur.execute(_CREATE_RESULTS)
        cur.execute(f"TRUNCATE {_RESULTS}")
        with cur.copy(_COPY_RESULTS) as copy:
            copy.write("".join(map(_result_line, results)))
        cur.execute(_PLAN_SETTINGS)
        cur.execute(_WRITE, [catalogue_version, since or _NEVER])
        kept: set[int] = set()
        if cur.rowcount < len(results) and since is not None:
            cur.execute(_RESOLVED_MEANWHILE, [[r.line.id for r in results], since])
            kept = {id_ for (id_,) in cur.fetchall()}
        cur.execute(_PLAN_DEFAULTS)  # a caller's own transaction plans as it did
    return kept


def _propose(
    matcher: Matcher, chunk: Sequence[LineInput], results: dict[int, LineResult], todo: list[int]
) -> None:
    """The trigram tier for the lines of ``chunk`` at ``todo`` (what its key tiers left), in a
    transaction of this thread's connection (its plan settings are local to one)."""
    if not todo:
        return
    with transaction.atomic(), connection.cursor() as wrapper:
        keys = [matching.normalize_mpn(chunk[i].mpn) for i in todo]
        found = matcher.similar(wrapper.cursor, keys)
    matcher.propose(chunk, todo, found, results)


def _store(
    chunk: Sequence[LineInput],
    results: dict[int, LineResult],
    version: int,
    since: datetime | None = None,
) -> list[LineResult]:
    """Store a decided chunk's results in a transaction of this thread's connection; a line
    an operator resolved meanwhile (``write_results``) is counted as the operator left it."""
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute(_RELAXED_LOCAL)
        out = [results[i] for i in range(len(chunk))]
        kept = write_results(out, catalogue_version=version, since=since)
    if kept:
        # as the operator left the line (what the run counts; the line itself is not written)
        out = [
            LineResult(r.line, Decision(Status.MATCHED, Tier.MANUAL, 1.0))
            if r.line.id in kept
            else r
            for r in out
        ]
    return out


def _store_proposed(
    proposed: Future,
    chunk: Sequence[LineInput],
    results: dict[int, LineResult],
    version: int,
    since: datetime | None,
) -> list[LineResult]:
    proposed.result()  # the chunk's proposals are in ``results`` (or their error goes up)
    return _store(chunk, results, version, since)


# chunks matched ahead of the oldest one not yet stored: enough to keep the helper connections
# busy, few enough that progress is reported as chunks are stored
_AHEAD = 2
# connections that store chunks side by side (each its own thread; chunks write disjoint lines)
_STORERS = 2


def _on_each(pool: ThreadPoolExecutor, workers: int, work: Callable[[], object]) -> list[Future]:
    """Run ``work`` once in each of ``pool``'s ``workers`` threads (``connection`` is per
    thread): one task per thread, each held at a barrier until all have one. A pool makes a
    thread for a task that finds none idle, up to ``workers``, and a thread held at the barrier
    takes no other task, so the tasks meet in as many threads."""
    barrier = Barrier(workers)

    def each() -> None:
        try:
            barrier.wait()
        finally:
            work()

    return [pool.submit(each) for _ in range(workers)]


def _connect() -> None:
    connection.ensure_connection()  # this thread's connection (looked up here, not by the caller)


def _close_helpers(pools: Sequence[tuple[ThreadPoolExecutor, int]]) -> None:
    """Close each helper thread's connection and shut its pool down, every pool whatever
    happens to another (the first error goes up once all are done)."""
    failed: BaseException | None = None
    for pool, workers in pools:
        try:
            for done in _on_each(pool, workers, connections.close_all):
                done.result()
        except BaseException as exc:  # re-raised below, once every pool is done
            failed = failed or exc
        finally:
            pool.shutdown()
    if failed is not None:
        raise failed


def _stored(matcher: Matcher, stored: Future) -> list[LineResult]:
    """A chunk's stored results, the wait for them counted in ``matcher.waited``."""
    started = time.perf_counter()
    try:
        return stored.result()
    finally:
        matcher.waited["storing"] += time.perf_counter() - started


def run_chunks(
    matcher: Matcher,
    lines: Sequence[LineInput],
    *,
    size: int,
    version: int,
    since: datetime | None = None,
) -> Iterator[list[LineResult]]:
    """Match and store ``lines`` chunk by chunk; yields each chunk's results once stored.
    Lines an operator resolves from ``since`` on (the run's request) keep their resolution.

    Outside a transaction (a worker), four connections share the work, each on its own
    thread: this one runs the key tiers of a chunk, a second proposes look-alikes for the
    lines the previous chunk's key tiers left, and two more store the chunks before that, side
    by side, so the database and Python run together instead of in turn. (Proposals and
    storing shared one helper connection at first; that helper was the slower side. A third
    connection took the benchmark BOM from 0.517 to 0.462 s, median of 6 alternating runs
    each; once the look-alikes read indexes alone, storing was the slower side, and a second
    storing connection took the chunk loop from 0.482 to 0.441 s, 8 alternating runs each.)
    The proposals thread counts only the trigram tier's figures in ``matcher``, this one the
    others'. Inside a transaction (a test, a caller's atomic block) other connections would
    not see what this one wrote: one connection does everything, chunk after chunk.
    Automatic garbage collection is paused meanwhile: a chunk allocates tens of thousands of
    small objects and no cycles, and the collector's passes over them cost a tenth of the run.
    """
    chunks = [lines[start : start + size] for start in range(0, len(lines), size)]
    collecting = gc.isenabled()
    gc.disable()
    try:
        if connection.in_atomic_block:
            for chunk in chunks:
                with transaction.atomic():
                    results, todo = matcher.match_keys(chunk)
                    _propose(matcher, chunk, results, todo)
                    out = _store(chunk, results, version, since)
                yield out
            return
        proposing = ThreadPoolExecutor(1, thread_name_prefix="enrich-propose")
        storing = ThreadPoolExecutor(_STORERS, thread_name_prefix="enrich-store")
        # the helpers open their connections while this thread matches the first chunk
        for pool, workers in ((proposing, 1), (storing, _STORERS)):
            _on_each(pool, workers, _connect)
        pending: deque[tuple[Future, Future]] = deque()  # (proposed, stored) per chunk
        try:
            for chunk in chunks:
                with transaction.atomic():
                    results, todo = matcher.match_keys(chunk)
                proposed = proposing.submit(_propose, matcher, chunk, results, todo)
                stored = storing.submit(_store_proposed, proposed, chunk, results, version, since)
                pending.append((proposed, stored))
                while pending and (len(pending) > _AHEAD or pending[0][1].done()):
                    yield _stored(matcher, pending.popleft()[1])
            while pending:
                yield _stored(matcher, pending.popleft()[1])
        finally:
            for proposed, stored in pending:  # the caller stopped (cancelled): not stored
                stored.cancel()  # if not begun
                proposed.cancel()
            started = time.perf_counter()
            _close_helpers(((proposing, 1), (storing, _STORERS)))
            matcher.waited["closing"] += time.perf_counter() - started
    finally:
        if collecting:
            gc.enable()
