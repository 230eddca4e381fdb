"""Set-based matching around the pure tiers of ``matching.py``: one SQL statement per tier for a
whole chunk of lines (the lines' keys go in as arrays and are joined against the catalogue's
B-tree indexes), never a query per line; one UPDATE writes a chunk's results.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection

from . import matching
from .matching import Candidate, Decision, Status, Tier

_COMPONENT_COLUMNS = """c.id, c.manufacturer, c.manufacturer_key, c.mpn, c.lifecycle, c.stock,
    c.unit_price, c.price_breaks, c.currency, c.datasheet_url"""
# the organization goes in beside each key, as the import writer does: a join key the planner
# can only probe with, never a constant it misjudges on a catalogue that just grew
_BY_KEY = f"""
SELECT l.i, {_COMPONENT_COLUMNS}
FROM unnest(%s::int[], %s::bigint[], %s::text[]) AS l(i, org, key)
JOIN enrichment_component c ON c.organization_id = l.org AND c.{{column}} = l.key
"""
_LEARNED = f"""
SELECT l.i, {_COMPONENT_COLUMNS}
FROM unnest(%s::int[], %s::bigint[], %s::text[], %s::text[]) AS l(i, org, key, maker)
JOIN enrichment_learnedmatch m ON m.organization_id = l.org AND m.mpn_key = l.key
     AND m.manufacturer_key = l.maker
JOIN enrichment_component c ON c.id = m.component_id
"""
# Trigram similarity only proposes. Cheap first: look-alikes that share the line's leading
# characters, as a byte-wise range on the pattern-ops B-tree (a LIKE whose pattern is a column
# cannot use the index: it walked every component of the organization per line), at most
# PREFIX_SCAN of them ranked per line, with half the key and then a third of it as the
# prefix; the GIN trigram index only for the few lines left (GIN_MAX_LINES a chunk): on a 1M
# catalogue it costs milliseconds per line even at a high threshold.
PREFIX_SCAN = 100
_SIMILAR_BY_PREFIX = f"""
SELECT l.i, {_COMPONENT_COLUMNS}, similarity(c.mpn_norm, l.key) AS score
FROM unnest(%s::int[], %s::bigint[], %s::text[], %s::text[], %s::text[])
     AS l(i, org, key, low, high)
CROSS JOIN LATERAL (
    SELECT p.* FROM (
        SELECT * FROM enrichment_component c0
        WHERE c0.organization_id = l.org
          AND c0.mpn_norm::text ~>=~ l.low AND c0.mpn_norm::text ~<~ l.high
        LIMIT {PREFIX_SCAN}) p
    WHERE similarity(p.mpn_norm, l.key) >= %s
    ORDER BY similarity(p.mpn_norm, l.key) DESC, p.id
    LIMIT {matching.MAX_CANDIDATES}) c
"""
_SIMILAR_BY_GIN = f"""
SELECT l.i, {_COMPONENT_COLUMNS}, similarity(c.mpn_norm, l.key) AS score
FROM unnest(%s::int[], %s::bigint[], %s::text[]) AS l(i, org, key)
CROSS JOIN LATERAL (
    SELECT * FROM enrichment_component c0
    WHERE c0.organization_id = l.org AND c0.mpn_norm %% l.key
    ORDER BY similarity(c0.mpn_norm, l.key) DESC, c0.id
    LIMIT {matching.MAX_CANDIDATES}) c
"""
GIN_MIN_SIMILARITY = 0.6  # below it a GIN probe of a large catalogue takes seconds per line
GIN_MAX_LINES = 50

# A chunk's results go in by COPY to a session temp table and one UPDATE joined on the line id:
# binding fourteen arrays of 2,000 values took psycopg longer than the UPDATE itself.
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
WHERE b.id = r.id
"""


@dataclass(frozen=True, slots=True)
class LineInput:
    id: int
    mpn: str
    manufacturer: str
    quantity: int
    dnp: bool
    problem: str = ""  # why the file's row could not be read as a line: it stays an error


@dataclass(slots=True)
class LineResult:
    line: LineInput
    decision: Decision
    unit_price: Decimal | None = None
    extended_price: Decimal | None = None
    warnings: tuple[str, ...] = ()


def _candidate(row: Sequence, score: float) -> Candidate:
    raw = row[7]
    if isinstance(raw, str):  # Django leaves jsonb to be parsed by the caller
        raw = json.loads(raw)
    breaks = tuple((int(q), Decimal(str(p))) for q, p in (raw or []))
    return Candidate(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], breaks, score, row[8], row[9]
    )


def _fetch(cur, sql: str, params: list, score: float | None = None) -> dict[int, list[Candidate]]:
    cur.execute(sql, params)
    found: dict[int, list[Candidate]] = defaultdict(list)
    for row in cur.fetchall():
        found[row[0]].append(_candidate(row[1:], score if score is not None else float(row[-1])))
    return found


class Matcher:
    """Matches chunks of one organization's BOM lines; keeps time and lines per tier."""

    def __init__(self, *, organization_id: int, aliases: dict[str, str]) -> None:
        self.org = organization_id
        self.aliases = aliases
        self.seconds: dict[str, float] = defaultdict(float)
        self.lines: dict[str, int] = defaultdict(int)  # decided in each tier
        self.examined: dict[str, int] = defaultdict(int)  # looked up by each tier's statement

    def maker_key(self, name: str) -> str:
        key = matching.manufacturer_key(name)
        if not key:
            return ""
        return matching.manufacturer_key(self.aliases.get(key, name))

    def match(self, lines: Sequence[LineInput]) -> list[LineResult]:
        """Decide every line of ``lines``: one statement per tier for all of them."""
        results: dict[int, LineResult] = {}
        todo: list[int] = []
        for i, line in enumerate(lines):
            if line.problem:
                results[i] = LineResult(line, Decision(Status.ERROR, notes=[line.problem]))
            elif line.dnp:
                results[i] = LineResult(line, Decision(Status.SKIPPED, notes=["Not populated."]))
            elif not matching.normalize_mpn(line.mpn):
                results[i] = LineResult(
                    line, Decision(Status.NOT_FOUND, notes=["The line gives no part number."])
                )
            else:
                todo.append(i)
        makers = {i: self.maker_key(lines[i].manufacturer) for i in todo}
        with connection.cursor() as wrapper:
            cur = wrapper.cursor
            cur.execute("SET LOCAL enable_hashjoin = off")
            cur.execute("SET LOCAL enable_mergejoin = off")
            cur.execute("SET LOCAL enable_seqscan = off")
            for tier, column, keyfn in (
                (Tier.EXACT, "mpn_key", matching.exact_key),
                (Tier.NORMALIZED, "mpn_norm", matching.normalize_mpn),
                (Tier.PACKAGING, "mpn_base", matching.packaging_key),
            ):
                if not todo:
                    break
                started = time.perf_counter()
                keys = [keyfn(lines[i].mpn) for i in todo]
                self.examined[tier] += len(todo)
                found = _fetch(
                    cur,
                    _BY_KEY.format(column=column),
                    [todo, [self.org] * len(todo), keys],
                    matching.CONFIDENCE[tier],
                )
                todo = self._decide(tier, lines, todo, found, makers, results)
                self.seconds[tier] += time.perf_counter() - started
            # An operator's earlier choice also settles a line the key tiers left ambiguous:
            # that is the very line an operator resolves.
            ambiguous = [i for i, r in results.items() if r.decision.status == Status.AMBIGUOUS]
            asked = sorted([*todo, *ambiguous])
            if asked:
                started = time.perf_counter()
                self.examined[Tier.LEARNED] += len(asked)
                found = _fetch(
                    cur,
                    _LEARNED,
                    [
                        asked,
                        [self.org] * len(asked),
                        [matching.exact_key(lines[i].mpn) for i in asked],
                        [makers[i] for i in asked],
                    ],
                    matching.CONFIDENCE[Tier.LEARNED],
                )
                if found:
                    learned = [i for i in asked if i in found]
                    self._decide(
                        Tier.LEARNED, lines, learned, found, dict.fromkeys(learned, ""), results
                    )
                    todo = [i for i in todo if i not in found]
                self.seconds[Tier.LEARNED] += time.perf_counter() - started
            if todo:
                started = time.perf_counter()
                self._similar(cur, lines, todo, results)
                self.seconds[Tier.TRIGRAM] += time.perf_counter() - started
                self.lines[Tier.TRIGRAM] += len(todo)
                self.examined[Tier.TRIGRAM] += len(todo)
        out = [results[i] for i in range(len(lines))]
        for result in out:
            _price(result)
        return out

    def _decide(
        self,
        tier: str,
        lines: Sequence[LineInput],
        todo: list[int],
        found: dict[int, list[Candidate]],
        makers: dict[int, str],
        results: dict[int, LineResult],
    ) -> list[int]:
        """Apply ``tier``'s decision to each line of ``todo``; returns the undecided ones."""
        left = []
        for i in todo:
            line = lines[i]
            decision = matching.decide(
                tier, found.get(i, ()), manufacturer=makers[i], quantity=line.quantity, mpn=line.mpn
            )
            if decision is None:
                left.append(i)
            else:
                if i in results:  # a learned choice replaces an ambiguous outcome
                    self.lines[results[i].decision.tier] -= 1
                results[i] = LineResult(line, decision)
                self.lines[tier] += 1
        return left

    def _similar(
        self, cur, lines: Sequence[LineInput], todo: list[int], results: dict[int, LineResult]
    ) -> None:
        threshold = settings.ENRICHMENT_SIMILARITY
        keys = {i: matching.normalize_mpn(lines[i].mpn) for i in todo}
        usable = [i for i in todo if len(keys[i]) >= 3]  # shorter: no trigram to go on
        found: dict[int, list[Candidate]] = {}
        for width in (lambda k: max(3, len(k) // 2), lambda k: max(3, len(k) // 3)):
            ask = [i for i in usable if i not in found]
            if not ask:
                break
            low = [keys[i][: width(keys[i])] for i in ask]
            high = [_next_key(p) for p in low]
            params = [ask, [self.org] * len(ask), [keys[i] for i in ask], low, high, threshold]
            found.update(_fetch(cur, _SIMILAR_BY_PREFIX, params))
        rest = [i for i in usable if i not in found]
        if 0 < len(rest) <= GIN_MAX_LINES:
            cur.execute(
                "SELECT set_config('pg_trgm.similarity_threshold', %s, true)",
                [str(max(threshold, GIN_MIN_SIMILARITY))],
            )
            found.update(
                _fetch(
                    cur, _SIMILAR_BY_GIN, [rest, [self.org] * len(rest), [keys[i] for i in rest]]
                )
            )
        for i in todo:
            results[i] = LineResult(lines[i], matching.decide_similar(found.get(i, [])))


def _next_key(prefix: str) -> str:
    """The smallest key above every key that starts with ``prefix`` (byte-wise; normalized
    keys hold only ASCII letters and digits)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _price(result: LineResult) -> None:
    c = result.decision.component
    if c is None:
        return
    qty = result.line.quantity
    result.unit_price = matching.unit_price_at(qty, c.price_breaks, c.unit_price)
    if result.unit_price is not None:
        result.extended_price = result.unit_price * qty
    result.warnings = tuple(matching.warnings_for(c, qty))


def write_results(results: Sequence[LineResult], *, catalogue_version: int) -> None:
    """Store a chunk's results: COPY to a temp table, one UPDATE. Call inside a transaction."""
    if not results:
        return
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        cur.execute(_CREATE_RESULTS)
        cur.execute(f"TRUNCATE {_RESULTS}")
        with cur.copy(_COPY_RESULTS) as copy:
            for r in results:
                d, c = r.decision, r.decision.component
                candidates = [
                    {"component_id": x.id, "score": round(x.score, 3)} for x in d.candidates
                ]
                copy.write_row(
                    (
                        r.line.id,
                        d.status,
                        d.tier,
                        round(d.confidence, 4),
                        c.id if c else None,
                        json.dumps(candidates),
                        c.lifecycle if c else "",
                        c.stock if c else None,
                        r.unit_price,
                        r.extended_price,
                        c.currency if c else "",
                        c.datasheet_url if c else "",
                        json.dumps(list(r.warnings)),
                        json.dumps(d.notes),
                    )
                )
        cur.execute(_WRITE, [catalogue_version])
