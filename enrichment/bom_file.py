"""A BOM file's rows to lines: the header aliases BOM tools write, quantities and DNP marks.

Rows come from the product import's readers; the header goes through its ``map_header`` with
this alias table. A row with a problem (a quantity that is not a number) is kept as a line with
status ``error`` and the problem as its note: nothing in the file is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from imports.pipeline.readers import TabularSource
from imports.pipeline.validation import HeaderMap, map_header, normalize_header

from .matching import count_text, not_populated
from .models import BomLine, MatchStatus

BOM_ALIASES: dict[str, tuple[str, ...]] = {
    "mpn": (
        "mpn",
        "manufacturer part number",
        "mfr part #",
        "mfr part number",
        "mfr part no",
        "mfr #",
        "mfg#",
        "mfg #",
        "mfg part number",
        "part number",
        "part #",
    ),
    "manufacturer": ("manufacturer", "mfr", "mfg", "manufacturer name", "mfr name"),
    "quantity": ("qty", "quantity", "qty per board", "count"),
    "references": (
        "designator",
        "designators",
        "refdes",
        "ref des",
        "reference",
        "references",
        "reference(s)",
    ),
    "description": ("description", "desc"),
    "value": ("value",),
    "dnp": ("dnp", "do not populate", "dnf", "do not fit", "not populated"),
    "fitted": ("fitted", "populate", "populated"),
}
# BOMs often have an internal part number column beside the maker's: with both, the maker's
# column is the MPN and the generic one is left aside (it would otherwise be a duplicate)
GENERIC_MPN = ("part number", "part #")
MAX_QUANTITY = 2**31 - 1
_REF_SPLIT = re.compile(r"[\s,;]+")
# a range of designators, as EDA tools compress them: R1-R4 (or R1-4) is four
_REF_RANGE = re.compile(r"([A-Za-z_]+)([0-9]{1,6})-(?:\1)?([0-9]{1,6})")
RANGE_MAX = 10_000  # a longer "range" is not one (R1-999999 is a typo): it counts as one


def designator_count(references: str) -> int:
    """How many parts the designators name: each one, and each of a range (``R1-R4``).

    >>> designator_count("R1, R2 R3"), designator_count("R1-R4,C7"), designator_count("R5-4")
    (3, 5, 1)
    """
    count = 0
    for ref in _REF_SPLIT.split(references):
        if not ref:
            continue
        m = _REF_RANGE.fullmatch(ref)
        span = int(m[3]) - int(m[2]) + 1 if m else 1
        count += span if 1 < span <= RANGE_MAX else 1
    return count


def _quantity(raw: str, references: str) -> tuple[int, str]:
    """The line's quantity and a problem ('' when fine). No quantity: one per designator."""
    text = count_text(raw.strip())
    if not text:
        return max(designator_count(references), 1), ""
    if text.isascii() and text.isdecimal():
        # int() refuses a text of over 4,300 digits (a ValueError: a 500 before); anything
        # over ten digits is out of range anyway
        value = int(text) if len(text.lstrip("0")) <= 10 else MAX_QUANTITY + 1
    else:
        try:
            number = float(text)
        except ValueError:
            return 1, f"quantity '{raw.strip()}' is not a whole number"
        if not number.is_integer():
            return 1, f"quantity '{raw.strip()}' is not a whole number"
        value = int(number)
    if value < 0 or value > MAX_QUANTITY:
        return 1, f"quantity '{raw.strip()}' is out of range"
    return value, ""


def map_bom_header(header: list[str]) -> HeaderMap:
    """The BOM's columns (``map_header`` with ``BOM_ALIASES``); a generic ``Part Number``
    column beside a maker's part number column (``MPN``, ``Mfr Part #``, …) is not the MPN."""
    names = {normalize_header(h) for h in header}
    aliases = BOM_ALIASES
    if names & set(GENERIC_MPN) and names & (set(BOM_ALIASES["mpn"]) - set(GENERIC_MPN)):
        specific = tuple(a for a in BOM_ALIASES["mpn"] if a not in GENERIC_MPN)
        aliases = {**BOM_ALIASES, "mpn": specific}
    return map_header(header, aliases=aliases, required=("mpn",))


def read_bom_lines(source: TabularSource, header: HeaderMap) -> Iterator[tuple[BomLine, str]]:
    """Each data row as an unsaved ``BomLine`` and its problem ('' when none)."""
    cols = header.columns

    for number, values in source.rows():
        # PostgreSQL's text cannot hold a NUL (the reader checks only the file's first bytes
        # for a binary file): the row is kept as an error line, without the NULs
        nul = any("\x00" in v for v in values)
        if nul:
            values = [v.replace("\x00", "") for v in values]
        width = len(values)

        def cell(field: str, values=values, width=width) -> str:
            i = cols.get(field, -1)
            return values[i].strip() if 0 <= i < width else ""

        references = cell("references")
        quantity, problem = _quantity(cell("quantity"), references)
        dnp = not_populated(cell("dnp")) or (
            "fitted" in cols and not_populated(cell("fitted"), fitted_column=True)
        )
        mpn = cell("mpn")
        line = BomLine(
            line_number=number,
            references=references,
            quantity=quantity,
            mpn=mpn[:200],
            manufacturer=cell("manufacturer")[:200],
            description=cell("description") or cell("value"),
            dnp=dnp,
        )
        if len(mpn) > 200:
            problem = problem or "the part number is longer than 200 characters"
        if nul:
            problem = problem or (
                "a cell holds a NUL character (a binary file or a bad export?): remove it and "
                "upload the file again"
            )
        if problem:
            problem = f"Row {number}: {problem}"
            line.match_status = MatchStatus.ERROR
            line.notes = [problem]
        yield line, problem
