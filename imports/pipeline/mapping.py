"""Column mapping: which of a file's columns feeds which field. Pure code, no ORM.

Everything here takes a ``FieldSpec`` (the fields, which are required, their aliases) as data,
so the same machinery maps product files here and BOM files in the enrichment app.

``propose()`` suggests a mapping for a header, strongest evidence first:

1. the organization's remembered mapping for the same set of columns (a person confirmed it);
2. a store preset recognised by its headers (Shopify, WooCommerce, Google Merchant Center);
3. the spec's aliases, then near names (``Prodct Name`` → name).

Two columns that could feed one field are not an error: the stronger candidate wins and the
proposal says why, so a person can change it. ``resolve()`` turns a mapping a client sent into
a ``HeaderMap`` or a ``MappingError`` that names what is wrong.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .validation import ALIASES, FIELDS, REQUIRED_COLUMNS, HeaderMap, normalize_header

# how alike two names must be to propose one for the other, and to trust it without asking
NEAR_PROPOSE = 0.78
NEAR_CONFIDENT = 0.88
# the strength of each kind of evidence, for picking between two columns that want one field
_STRENGTH = {"user": 6, "remembered": 5, "preset": 4, "field": 3, "alias": 2, "near": 1}


@dataclass(frozen=True)
class FieldSpec:
    """What a file is mapped onto: the fields in order, the required ones, their aliases."""

    name: str
    fields: tuple[str, ...]
    required: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]]

    def alias_rank(self, normalized: str) -> tuple[str, int] | None:
        """The field a normalized header is an alias of, and the alias's rank (0 = the
        field's own name, lower = listed earlier = stronger)."""
        for f in self.fields:
            if normalized == normalize_header(f):
                return f, 0
        for f in self.fields:
            for rank, alias in enumerate(self.aliases.get(f, ()), start=1):
                if normalized == normalize_header(alias):
                    return f, rank
        return None


PRODUCT_SPEC = FieldSpec("product", FIELDS, REQUIRED_COLUMNS, ALIASES)


@dataclass
class ColumnChoice:
    column: str
    field: str | None
    source: str = ""  # user, remembered, preset, field, alias, near or "" (not mapped)
    score: float = 0.0  # 1.0 for anything but a near name
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "field": self.field,
            "source": self.source,
            "score": round(self.score, 2),
            "note": self.note,
        }


@dataclass
class Proposal:
    """A mapping for one header, with the evidence for each column and what is still missing."""

    header: list[str]
    choices: list[ColumnChoice]
    preset: str | None = None
    remembered: bool = False
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unsure: list[str] = field(default_factory=list)  # required fields fed only by a weak match

    @property
    def mapping(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for choice in self.choices:
            out.setdefault(choice.column, choice.field)
        return out

    @property
    def confident(self) -> bool:
        return not self.missing and not self.unsure

    def as_dict(self) -> dict[str, Any]:
        return {
            "mapping": self.mapping,
            "columns": [c.as_dict() for c in self.choices],
            "preset": self.preset,
            "remembered": self.remembered,
            "missing": self.missing,
            "unsure": self.unsure,
            "confident": self.confident,
            "notes": self.notes,
        }


class MappingError(Exception):
    """A mapping a client sent cannot be used; the message is for the user."""


def header_key(header: Sequence[str]) -> str:
    """The identity of a header *set*: the same columns in another order are the same file
    layout, so a remembered mapping (keyed by column name) still fits."""
    names = sorted({normalize_header(h) for h in header if h.strip()})
    return hashlib.sha256("\x1f".join(names).encode()).hexdigest()[:40]


# a header that ends with a field's name as a word ("Variant SKU") is a good guess, not a sure one
_WORD_SUFFIX = 0.8


def _near(normalized: str, spec: FieldSpec) -> tuple[str, float] | None:
    best: tuple[str, float] | None = None
    for f in spec.fields:
        for name in (f, *spec.aliases.get(f, ())):
            alias = normalize_header(name)
            score = difflib.SequenceMatcher(None, normalized, alias).ratio()
            if normalized.endswith(" " + alias):
                score = max(score, _WORD_SUFFIX)
            if score >= NEAR_PROPOSE and (best is None or score > best[1]):
                best = (f, score)
    return best


def propose(
    header: Sequence[str],
    spec: FieldSpec,
    *,
    remembered: Mapping[str, str | None] | None = None,
    preset_columns: Mapping[str, str | None] | None = None,
    preset: str | None = None,
) -> Proposal:
    """Propose a field (or none) for every column of ``header``.

    ``remembered``: the organization's confirmed mapping for this header set, if any.
    ``preset_columns``: the mapping of a preset recognised by its headers (``presets.detect``).
    """
    header = list(header)
    candidates: list[ColumnChoice] = []
    for raw in header:
        column = raw.strip()
        norm = normalize_header(raw)
        if not column:
            candidates.append(ColumnChoice(raw, None))
        elif remembered is not None and column in remembered:
            f = remembered[column]
            candidates.append(ColumnChoice(raw, f, "remembered" if f else "", 1.0))
        elif preset_columns is not None and column in preset_columns:
            f = preset_columns[column]
            candidates.append(ColumnChoice(raw, f, "preset" if f else "", 1.0))
        elif preset_columns is not None:
            # a preset knows its system's columns; the others are deliberately left out
            candidates.append(ColumnChoice(raw, None))
        elif (hit := spec.alias_rank(norm)) is not None:
            f, rank = hit
            candidates.append(
                ColumnChoice(raw, f, "field" if rank == 0 else "alias", 1.0 - rank / 100)
            )
        elif (near := _near(norm, spec)) is not None:
            f, score = near
            candidates.append(ColumnChoice(raw, f, "near", score, f"name is close to '{f}'"))
        else:
            candidates.append(ColumnChoice(raw, None))

    proposal = Proposal(
        header=header,
        choices=candidates,
        preset=preset,
        remembered=remembered is not None,
    )
    _settle_conflicts(proposal)
    _check_required(proposal, spec)
    return proposal


def _settle_conflicts(proposal: Proposal) -> None:
    """Keep one column per field: the strongest evidence, then the earlier column; say why."""
    by_field: dict[str, list[ColumnChoice]] = {}
    for choice in proposal.choices:
        if choice.field:
            by_field.setdefault(choice.field, []).append(choice)
    for f, rivals in by_field.items():
        if len(rivals) < 2:
            continue
        winner = max(rivals, key=lambda c: (_STRENGTH.get(c.source, 0), c.score, -rivals.index(c)))
        losers = [c for c in rivals if c is not winner]
        why = _why(winner, losers[0])
        for loser in losers:
            loser.note = f"could also mean '{f}'; '{winner.column}' was kept ({why})"
            loser.field, loser.source, loser.score = None, "", 0.0
        names = ", ".join(f"'{c.column}'" for c in losers)
        winner.note = f"chosen over {names} for '{f}' ({why})"
        proposal.notes.append(
            f"Columns '{winner.column}' and {names} could both mean '{f}'; "
            f"'{winner.column}' was chosen ({why}). Change it if that is wrong."
        )


def _why(winner: ColumnChoice, loser: ColumnChoice) -> str:
    if winner.source != loser.source:
        labels = {
            "user": "you chose it",
            "remembered": "your earlier mapping of this layout",
            "preset": "the detected preset",
            "field": "its name is the field's own",
            "alias": "a known name",
            "near": "a close name",
        }
        return labels.get(winner.source, winner.source)
    if winner.score != loser.score:
        return "a stronger name match"
    return "it comes first in the file"


def _check_required(proposal: Proposal, spec: FieldSpec) -> None:
    fed = {c.field: c for c in proposal.choices if c.field}
    proposal.missing = [f for f in spec.required if f not in fed]
    proposal.unsure = [
        f
        for f in spec.required
        if f in fed and fed[f].source == "near" and fed[f].score < NEAR_CONFIDENT
    ]


# a mapping's error names at most this many problems, each name cut to SHOWN_CHARS, and lists at
# most LISTED_COLUMNS of the file's columns: a wide header and a long mapping made it gigabytes
MAX_PROBLEMS, SHOWN_CHARS, LISTED_COLUMNS = 10, 80, 30


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "\u2026"


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(map(_shown, names[:LISTED_COLUMNS]))
    more = len(names) - LISTED_COLUMNS
    return shown + (f" and {more} more" if more > 0 else "")


def resolve(header: Sequence[str], mapping: Mapping[str, Any], spec: FieldSpec) -> HeaderMap:
    """A ``HeaderMap`` (field → column index) for ``mapping`` ({column: field or null}).

    Columns the mapping does not name are ignored. Raises ``MappingError`` for a column that
    is not in the file, a field that does not exist, two columns sent to one field, or a
    required field left without a column.
    """
    positions: dict[str, int] = {}
    for index, raw in enumerate(header):
        positions.setdefault(raw.strip(), index)
    columns: dict[str, int] = {}
    problems: list[str] = []
    absent: list[str] = []
    for column, f in mapping.items():
        if not isinstance(column, str) or column.strip() not in positions:
            absent.append(f"'{_shown(column)}'")
            continue
        if f in (None, ""):
            continue
        if not isinstance(f, str) or f not in spec.fields:
            problems.append(
                f"column '{_shown(column)}': '{_shown(f)}' is not a field (use one of "
                f"{', '.join(spec.fields)}, or null to leave the column out)"
            )
            continue
        if f in columns:
            problems.append(
                f"columns '{_shown(header[columns[f]].strip())}' and '{_shown(column)}' are "
                f"both mapped to '{f}'; map one of them"
            )
            continue
        columns[f] = positions[column.strip()]
    if absent:
        # named once, with the file's columns once: a wide header times many keys was GBs
        found = _listed([h for h in header if h.strip()])
        which = "column {} is" if len(absent) == 1 else "columns {} are"
        problems.insert(0, f"{which.format(_listed(absent))} not in the file (found: {found})")
    missing = [f for f in spec.required if f not in columns]
    if missing and not problems:
        problems.append(f"no column is mapped to {', '.join(repr(m) for m in missing)}")
    if problems:
        more = len(problems) - MAX_PROBLEMS
        listed = problems[:MAX_PROBLEMS] + ([f"and {more} more"] if more > 0 else [])
        raise MappingError("Mapping: " + "; ".join(listed) + ".")
    mapped = set(columns.values())
    unknown = [h.strip() for i, h in enumerate(header) if h.strip() and i not in mapped]
    return HeaderMap(columns=columns, unknown=unknown, width=len(header))


def parse_mapping(raw: Any) -> dict[str, str | None] | None:
    """A client's ``mapping`` (a JSON object, or its text in a form field) as a dict."""
    import json

    if raw in (None, ""):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise MappingError(f"mapping is not valid JSON ({exc.msg}).") from exc
    if not isinstance(raw, dict):
        raise MappingError('mapping must be a JSON object: {"column": "field" or null, ...}.')
    if len(raw) > 1000:
        raise MappingError("mapping names more than 1,000 columns.")
    return {str(k): (None if v in (None, "") else v) for k, v in raw.items()}
