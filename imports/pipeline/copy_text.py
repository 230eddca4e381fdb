"""Clean rows (products, components) as PostgreSQL COPY text lines, built where rows are
validated.

The validator process turns each clean product into one line of COPY's text format, so the
writer only streams text to PostgreSQL: formatting row by row in the writer (psycopg's
``write_row``) cost 4.6 µs a row of its GIL-holding time, measured, while the validator process
has time to spare. Each line holds ``organization_id, *FIELDS``: the column list of both COPYs
in writers.py. The timestamps are the table's defaults (``now()``): as text in every line they
were a third of its bytes (19 of 54 MiB for 300k rows), to build, pickle, send and parse, and a
COPY of 300k rows without them took 0.88 s instead of 1.19 s here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat

from .validation import FIELDS

SEPARATORS = len(FIELDS)  # tabs in a line: organization_id + FIELDS
NULL = "\\N"  # COPY text's null, as a value of ``copy_text_of``'s ``raw`` column
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))
_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def escape(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    for raw, escaped in _ESCAPES:
        value = value.replace(raw, escaped)
    return value


def line_of(org: str, values: Sequence[str]) -> str:
    """One COPY text line (with its newline): organization ``org`` and a product's clean
    ``values`` in ``FIELDS`` order (``RowValidator.check``)."""
    return _line((org, *values), SEPARATORS)


def _line(fields: Sequence[str], separators: int, raw: int | None = None) -> str:
    """``fields`` as one line; the field at ``raw`` (if any) goes in as it is."""
    line = "\t".join(fields) + "\n"
    if raw is None and _plain(line, separators):  # the fast path: nothing needs escaping
        return line
    return "\t".join(f if i == raw else escape(f) for i, f in enumerate(fields)) + "\n"


def _plain(line: str, separators: int) -> bool:
    """Whether ``line`` (one joined line of ``separators`` tabs) needs no escaping."""
    return (
        line.count("\t") == separators
        and line.count("\n") == 1
        and "\\" not in line
        and "\r" not in line
    )


def copy_text_of(lead: str, columns: Sequence[Sequence[str]], *, raw: int | None = None) -> str:
    """COPY text, one line per row of ``columns`` (a list of columns, each a list of text):
    ``lead`` (the organization), then the row's values. Joined at C speed; only lines that need
    escaping are built one by one. Products (``FIELDS`` order, as ``check_batch`` gives them)
    and components alike.

    The column at index ``raw`` is written as it is, never escaped: values that are clean by
    construction (checked numbers) or ``NULL``."""
    separators = len(columns)
    rows = zip(repeat(lead), *columns[:-1], [v + "\n" for v in columns[-1]])
    lines = list(map("\t".join, rows))
    text = "".join(lines)
    nulls = 0 if raw is None else columns[raw].count(NULL)
    if (
        text.count("\t") != len(lines) * separators
        or text.count("\n") != len(lines)
        or text.count("\\") != nulls
        or "\r" in text
    ):
        at = None if raw is None else raw + 1  # the lead comes first
        text = "".join(
            line if _plain(line, separators) else _line((lead, *values), separators, at)
            for line, values in zip(lines, zip(*columns, strict=True), strict=True)
        )
    return text


def values_of(line: str, width: int = len(FIELDS)) -> list[str]:
    """The ``width`` values after the lead of a line (a product's FIELDS), unescaped (for
    error reports; not a hot path)."""
    cells = line.rstrip("\n").split("\t")[1 : 1 + width]
    out = []
    for cell in cells:
        if cell == NULL:
            cell = ""
        elif "\\" in cell:
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


@dataclass
class CopyBatch:
    """Clean rows on their way to a writer: file rows, each row's key (a product's SKU, a
    component's MPN) and their COPY text, in step.

    The text travels as one string (one line a row): the child pickles it and the parent
    unpickles it as a single copy, and the writer hands it to COPY as it is."""

    row_numbers: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    text: str = ""

    @classmethod
    def of(cls, org: str, numbers: Sequence[int], columns: list[list[str]]) -> CopyBatch:
        """The product batch of ``check_batch``'s clean ``columns`` at file rows ``numbers``."""
        return cls(list(numbers), columns[0], copy_text_of(org, columns))

    @classmethod
    def joined(cls, parts: Sequence[CopyBatch]) -> CopyBatch:
        if len(parts) == 1:
            return parts[0]
        return cls(
            list(chain.from_iterable(p.row_numbers for p in parts)),
            list(chain.from_iterable(p.keys for p in parts)),
            "".join(p.text for p in parts),
        )

    @property
    def lines(self) -> list[str]:
        """One COPY line a row (escaping leaves a raw newline only at each line's end)."""
        return [line + "\n" for line in self.text.split("\n")[:-1]]

    def __len__(self) -> int:
        return len(self.row_numbers)

    def subset(self, indices: list[int]) -> CopyBatch:
        """The rows at ``indices`` (distinct, in order)."""
        if len(indices) == len(self):  # all of it (every SKU new, or every one known)
            return self
        lines = self.lines
        return CopyBatch(
            [self.row_numbers[i] for i in indices],
            [self.keys[i] for i in indices],
            "".join(lines[i] for i in indices),
        )
