"""Clean products as PostgreSQL COPY text lines, built where rows are validated.

The validator process turns each clean product into one line of COPY's text format, so the
writer only streams text to PostgreSQL: formatting row by row in the writer (psycopg's
``write_row``) cost 4.6 µs a row of its GIL-holding time, measured, while the validator process
has time to spare. Each line holds ``organization_id, *FIELDS, created_at, updated_at``: the
column list of both COPYs in writers.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, repeat

from .validation import FIELDS

SEPARATORS = len(FIELDS) + 2  # tabs in a line: organization_id + FIELDS + 2 timestamps
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _escape(value: str) -> str:
    for raw, escaped in _ESCAPES:
        value = value.replace(raw, escaped)
    return value


def line_of(org: str, values: Sequence[str], ts: str) -> str:
    """One COPY text line (with its newline): organization ``org``, a product's clean
    ``values`` in ``FIELDS`` order (``RowValidator.check``) and the two timestamps."""
    fields = (org, *values, ts, ts)
    line = "\t".join(fields) + "\n"
    if _plain(line):  # the fast path: nothing in the values needs escaping
        return line
    return "\t".join(_escape(f) for f in fields) + "\n"


def _plain(line: str) -> bool:
    """Whether ``line`` (one joined line) needs no escaping."""
    return (
        line.count("\t") == SEPARATORS
        and line.count("\n") == 1
        and "\\" not in line
        and "\r" not in line
    )


def lines_of(org: str, columns: Sequence[Sequence[str]], ts: str) -> list[str]:
    """``line_of`` for each product of ``columns`` (``FIELDS`` order, as ``check_batch`` gives
    them), joined at C speed; only lines that need escaping are built one by one."""
    lines = list(map("\t".join, zip(repeat(org), *columns, repeat(ts), repeat(ts + "\n"))))
    text = "".join(lines)
    if (
        text.count("\t") != len(lines) * SEPARATORS
        or text.count("\n") != len(lines)
        or "\\" in text
        or "\r" in text
    ):
        lines = [
            line if _plain(line) else line_of(org, values, ts)
            for line, values in zip(lines, zip(*columns, strict=True), strict=True)
        ]
    return lines


def values_of(line: str) -> list[str]:
    """The FIELDS values of a line, unescaped (for error reports; not a hot path)."""
    cells = line.rstrip("\n").split("\t")[1 : 1 + len(FIELDS)]
    out = []
    for cell in cells:
        if "\\" in cell:
            chars, i = [], 0
            while i < len(cell):
                pair = cell[i : i + 2]
                if pair in _UNESCAPES:
                    chars.append(_UNESCAPES[pair])
                    i += 2
                else:
                    chars.append(cell[i])
                    i += 1
            cell = "".join(chars)
        out.append(cell)
    return out


def now_text() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class ProductBatch:
    """Clean products on their way to the writer: file rows, SKUs and their COPY text, in step.

    The text travels as one string (one line a product): the child pickles it and the parent
    unpickles it as a single copy, and the writer hands it to COPY as it is."""

    row_numbers: list[int] = field(default_factory=list)
    skus: list[str] = field(default_factory=list)
    text: str = ""

    @classmethod
    def of(
        cls, org: str, numbers: Sequence[int], columns: list[list[str]], ts: str
    ) -> ProductBatch:
        """The batch of ``check_batch``'s clean ``columns`` at file rows ``numbers``."""
        return cls(list(numbers), columns[0], "".join(lines_of(org, columns, ts)))

    @classmethod
    def joined(cls, parts: Sequence[ProductBatch]) -> ProductBatch:
        if len(parts) == 1:
            return parts[0]
        return cls(
            list(chain.from_iterable(p.row_numbers for p in parts)),
            list(chain.from_iterable(p.skus for p in parts)),
            "".join(p.text for p in parts),
        )

    @property
    def lines(self) -> list[str]:
        """One COPY line a product (escaping leaves a raw newline only at each line's end)."""
        return [line + "\n" for line in self.text.split("\n")[:-1]]

    def __len__(self) -> int:
        return len(self.row_numbers)

    def subset(self, indices: list[int]) -> ProductBatch:
        """The products at ``indices`` (distinct, in order)."""
        if len(indices) == len(self):  # all of it (every SKU new, or every one known)
            return self
        lines = self.lines
        return ProductBatch(
            [self.row_numbers[i] for i in indices],
            [self.skus[i] for i in indices],
            "".join(lines[i] for i in indices),
        )
