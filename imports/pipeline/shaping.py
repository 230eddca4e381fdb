"""From a file's rows to validated products under a mapping and a preset. Pure code, no ORM.

An ``ImportPlan`` (the mapping and the preset a job was started with; plain data, so it
travels to the validator process) gives a ``BatchChecker``: the validator's ``check_batch``
with the preset's rules in front. Without a preset the checker is ``RowValidator.check_batch``
on the file's own columns, the fast path, untouched. With one, each row is filled (context a
system leaves blank), skipped with a count, or shaped into ``FIELDS`` order and validated;
a failed row keeps its original cells (as filled), not the shaped ones, so the person who fixes
it sees their own file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .copy_text import CopyBatch
from .mapping import PRODUCT_SPEC, resolve
from .presets import PRESETS, Preset, RowRules, unescape_formula
from .validation import FIELDS, CheckedBatch, HeaderMap, RowError, RowValidator, map_header

_SHAPED = HeaderMap(columns={f: i for i, f in enumerate(FIELDS)}, unknown=[], width=len(FIELDS))


@dataclass(frozen=True)
class ImportPlan:
    """How a job reads its file: ``mapping`` ({column: field or None}; None: the header's
    aliases, as before mapping existed) and ``preset`` (a name in ``presets.PRESETS``)."""

    mapping: Mapping[str, str | None] | None = None
    preset: str | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> ImportPlan:
        return cls(mapping=options.get("mapping"), preset=options.get("preset") or None)

    def header_map(self, header: Sequence[str]) -> HeaderMap:
        """Raises ``MappingError`` or (no mapping) ``HeaderError`` with a user message."""
        if self.mapping is None and self.preset:
            return resolve(header, PRESETS[self.preset].columns_for(header), PRODUCT_SPEC)
        if self.mapping is None:
            return map_header(list(header))
        return resolve(header, self.mapping, PRODUCT_SPEC)

    def checker(self, header: Sequence[str], expected_rows: int) -> BatchChecker:
        return BatchChecker(header, self, expected_rows)


@dataclass
class ShapedRow:
    """One row under the plan, for previews: its fields, or why it is skipped or refused."""

    number: int
    values: list[str]  # the file's cells (as filled)
    fields: dict[str, str] = field(default_factory=dict)
    skipped: str = ""
    error: str = ""


class BatchChecker:
    """``check_batch`` for one file under a plan; counts skipped rows by reason."""

    def __init__(self, header: Sequence[str], plan: ImportPlan, expected_rows: int) -> None:
        self.header_map = plan.header_map(header)
        self.preset: Preset | None = PRESETS[plan.preset] if plan.preset else None
        self.skipped: Counter[str] = Counter()
        if self.preset is None:
            self._validator = RowValidator(self.header_map, expected_rows)
            self.rules: RowRules | None = None
        else:
            self._validator = RowValidator(_SHAPED, expected_rows)
            self.rules = self.preset.rules(header)
        cols = self.header_map.columns
        self._idx = [cols.get(f, -1) for f in FIELDS]

    def __call__(self, numbers: Sequence[int], rows: Sequence[list[str]]) -> CheckedBatch:
        if self.rules is None:
            return self._validator.check_batch(numbers, rows)
        kept_numbers: list[int] = []
        shaped: list[list[str]] = []
        originals: dict[int, list[str]] = {}
        early: list[RowError] = []
        for number, values in zip(numbers, rows, strict=True):
            outcome = self._shape(number, values)
            if isinstance(outcome, RowError):
                early.append(outcome)
            elif outcome is not None:
                kept_numbers.append(number)
                shaped.append(outcome[1])
                originals[number] = outcome[0]
        checked = self._validator.check_batch(kept_numbers, shaped)
        errors = [
            RowError(e.row_number, e.message, originals[e.row_number]) for e in checked.errors
        ]
        if early:
            errors = sorted([*early, *errors], key=lambda e: e.row_number)
        return CheckedBatch(checked.numbers, checked.columns, errors)

    def batch_of(self, org: str, checked: CheckedBatch) -> CopyBatch:
        """The clean products of ``checked`` as COPY text for the products table."""
        return CopyBatch.of(org, checked.numbers, checked.columns)

    def _shape(
        self, number: int, values: list[str]
    ) -> tuple[list[str], list[str]] | RowError | None:
        rules = self.rules
        assert rules is not None
        values = rules.fill(list(values))
        reason = rules.skip(values)
        if reason:
            self.skipped[reason] += 1
            return None
        width = len(values)
        out = [unescape_formula(values[i]) if 0 <= i < width else "" for i in self._idx]
        problem = rules.shape(values, out)
        if problem:
            return RowError(number, f"Row {number}: {problem}", values)
        return values, out

    def summary(self) -> None:
        """Nothing: a product file's rows say all there is, batch by batch."""
        return None

    def take_skipped(self) -> Counter[str]:
        """Rows skipped since the last call, by reason."""
        taken, self.skipped = self.skipped, Counter()
        return taken

    def preview(self, numbers: Sequence[int], rows: Sequence[list[str]]) -> list[ShapedRow]:
        """Each row as it would be imported (fields or error or skip reason), in file order."""
        out: list[ShapedRow] = []
        for number, values in zip(numbers, rows, strict=True):
            if self.rules is None:
                filled, shaped = values, values
                validator_values: list[str] = list(values)
            else:
                before = Counter(self.skipped)
                outcome = self._shape(number, values)
                if outcome is None:
                    reason = next(iter((self.skipped - before).keys()), "skipped")
                    out.append(ShapedRow(number, list(values), skipped=reason))
                    continue
                if isinstance(outcome, RowError):
                    out.append(ShapedRow(number, outcome.values, error=outcome.message))
                    continue
                filled, shaped = outcome
                validator_values = shaped
            result = self._validator.check(number, validator_values)
            if isinstance(result, RowError):
                out.append(ShapedRow(number, list(filled), error=result.message))
            else:
                out.append(ShapedRow(number, list(filled), dict(zip(FIELDS, result, strict=True))))
        return out
