"""CSV and XLSX purchase orders: a block of ``Key: value`` lines, then a table of lines.

The header block ends at the first row that names at least three line columns (SKU,
quantity, unit cost, ...); every row after it is a line until a blank row followed by
``Subtotal:``/``Total:`` rows, which are read as header fields again. A ``Key:`` cell followed by
the value in the next cell is read like ``Key: value`` in one cell.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from imports.pipeline.readers import FileReadError, XlsxSource, detect_encoding, sniff_delimiter

from .aliases import header_field, line_column
from .document import ParsedLine, ParsedOrder, ParseError
from .numbers import parse_currency, parse_date, parse_decimal, parse_quantity

# ``key: value`` in one cell; the value is stripped after the match. ``(.*?)\s*$`` tried the
# trailing whitespace at every character: a 10 MB cell of spaces took time in its square.
_KEY_VALUE = re.compile(r"^\s*([^:]{1,40}?)\s*:([^\n]*)\s*\Z")
MIN_LINE_COLUMNS = 3
LABELLED = "labelled in the file's header block"


def _csv_rows(path: Path) -> Iterator[list[str]]:
    raw = path.read_bytes()
    if not raw.strip():
        raise ParseError("File is empty.")
    try:
        encoding = detect_encoding(raw[:65536])
        text = raw.decode(encoding)
    except (FileReadError, UnicodeDecodeError) as exc:
        raise ParseError(str(exc) if isinstance(exc, FileReadError) else "File is not text.")
    # sniff on the table, not the "Key: value" block above it
    # (the first 20 table lines, read lazily: not a list of every line of a 20 MB file)
    lines = (ln.rstrip("\r\n") for ln in io.StringIO(text, newline=None))
    table_lines = islice((ln for ln in lines if ln.count(",") + ln.count(";") >= 2), 20)
    delimiter = "\t" if "\t" in text[:4096] else sniff_delimiter("\n".join(table_lines))
    try:
        yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    except csv.Error as exc:
        raise ParseError(f"The CSV is malformed ({exc}).") from exc


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    try:
        source = XlsxSource(path)
    except FileReadError as exc:
        raise ParseError(str(exc)) from exc
    for row in source._rows():  # every row, the "Key: value" block included
        yield row.values


def _key_value(cells: list[str]) -> tuple[str, str] | None:
    filled = [c.strip() for c in cells if c and c.strip()]
    if not filled or len(filled) > 2:
        return None
    if len(filled) == 2 and filled[0].endswith(":"):
        return filled[0][:-1], filled[1]
    if len(filled) == 2 and header_field(filled[0]):
        return filled[0], filled[1]
    m = _KEY_VALUE.match(filled[0]) if len(filled) == 1 else None
    if m:
        return m.group(1), m.group(2).strip()
    return None


def read_tabular(path: Path, fmt: str) -> ParsedOrder:
    rows = _csv_rows(path) if fmt == "csv" else _xlsx_rows(path)
    order = ParsedOrder(source_format=fmt, template="tabular")
    columns: list[str | None] | None = None
    seen: dict[str, str] = {}
    for number, cells in enumerate(rows, start=1):
        if not any(c.strip() for c in cells if c):
            continue
        if columns is None:
            mapped = [line_column(c) if c else None for c in cells]
            if len({m for m in mapped if m}) >= MIN_LINE_COLUMNS:
                columns = mapped
                _check_columns(columns, cells)
                continue
            kv = _key_value(cells)
            if kv:
                _header(order, seen, kv[0], kv[1], number)
            continue
        kv = _key_value(cells)
        if kv and header_field(kv[0]) in ("subtotal", "tax", "total", "currency"):
            _header(order, seen, kv[0], kv[1], number)
            continue
        _line(order, columns, cells, number)
    if columns is None:
        raise ParseError(
            "No line table was found: expected a header row naming at least SKU, quantity and "
            "unit cost (or price) below the 'Key: value' lines."
        )
    return order


def _check_columns(columns: list[str | None], cells: list[str]) -> None:
    if "quantity" not in columns or not ({"sku", "supplier_sku"} & set(columns)):
        found = ", ".join(c for c in cells if c)
        raise ParseError(f"The line table needs a SKU and a quantity column (found: {found}).")


def _header(order: ParsedOrder, seen: dict[str, str], key: str, raw: str, row: int) -> None:
    name = header_field(key)
    if name is None:
        order.warnings.append(f"Row {row}: header field '{key}' is not one we use; ignored.")
        return
    if name in seen and seen[name] != raw:
        f = order.fields[name]
        f.score = min(f.score, 0.5)
        f.reasons.append(f"given twice with different values ('{seen[name]}', '{raw}')")
        return
    seen[name] = raw
    if name in ("subtotal", "tax", "total"):
        value = parse_decimal(raw)
        if value is None:
            order.set(name, None, 0.0, f"'{raw}' is not an amount")
            return
        order.set(name, value, 1.0, LABELLED)
    elif name in ("order_date", "expected_date"):
        date = parse_date(raw)
        if date is None:
            order.set(name, None, 0.0, f"'{raw}' is not a date we read")
            return
        order.set(name, date, 1.0, LABELLED)
    elif name == "currency":
        code = parse_currency(raw)
        order.set(name, code, 1.0 if code else 0.0, LABELLED if code else f"'{raw}' unknown")
    else:
        order.set(name, raw.strip(), 1.0 if raw.strip() else 0.0, LABELLED)


def _line(order: ParsedOrder, columns: list[str | None], cells: list[str], row: int) -> None:
    values: dict[str, str] = {}
    for column, cell in zip(columns, cells, strict=False):
        if column and cell is not None and column not in values:
            values[column] = str(cell).strip()
    line = ParsedLine(line_number=len(order.lines) + 1)
    line.sku = values.get("sku", "")[:64]
    line.supplier_sku = values.get("supplier_sku", "")[:64]
    line.description = values.get("description", "")
    line.image_url = values.get("image_url", "")
    line.reasons.append(f"row {row} of the line table")
    for key in ("quantity", "unit_cost", "line_total"):
        raw = values.get(key, "")
        if not raw:
            continue
        value = parse_quantity(raw) if key == "quantity" else parse_decimal(raw)
        if value is None:
            line.confidence = min(line.confidence, 0.3)
            line.reasons.append(f"{key.replace('_', ' ')} '{raw}' is not a number")
        setattr(line, key, value)
    if not (line.sku or line.supplier_sku):
        order.warnings.append(f"Row {row}: line has no SKU; kept without a product.")
        line.confidence = min(line.confidence, 0.6)
        line.reasons.append("no SKU")
    order.add_line(line)
