"""The first rows of a workbook's first sheet, read without openpyxl, in bounded work.

openpyxl (even read-only) loads every shared string before the first row: seconds of CPU for a
large workbook. The web request that takes an upload needs only the header (and the mapping
preview a screenful of rows), so this streams the sheet's XML with defusedxml (no entity
expansion) and stops at the rows it needs; it reads the shared strings only up to the highest
index those rows use. The worker still reads the whole workbook with openpyxl.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse, parse

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# rows scanned for the first non-empty ones before giving up (a sheet of blank rows)
MAX_SCANNED_ROWS = 10_000
_COLUMN = re.compile(r"^([A-Z]{1,3})")


class XlsxHeadError(Exception):
    """The workbook's first rows could not be read; the message is for the user."""


def first_sheet_part(package: zipfile.ZipFile) -> str:
    """The zip path of the workbook's first sheet, as Excel orders them."""
    try:
        with package.open("xl/workbook.xml") as fh:
            sheet = parse(fh).getroot().find(f"{MAIN}sheets/{MAIN}sheet")
        rel_id = sheet.get(f"{REL}id") if sheet is not None else None
        with package.open("xl/_rels/workbook.xml.rels") as fh:
            for rel in parse(fh).getroot().iter(f"{PKG_REL}Relationship"):
                if rel.get("Id") == rel_id:
                    target = rel.get("Target", "")
                    if target.startswith("/"):
                        return target.lstrip("/")
                    return posixpath.normpath(posixpath.join("xl", target))
    except KeyError:
        pass
    return "xl/worksheets/sheet1.xml"


def _column_index(ref: str | None, fallback: int) -> int:
    match = _COLUMN.match(ref or "")
    if not match:
        return fallback
    index = 0
    for letter in match.group(1):
        index = index * 26 + (ord(letter) - 64)
    return index - 1


def _text(element: object) -> str:
    return "".join(t.text or "" for t in element.iter(f"{MAIN}t"))  # type: ignore[attr-defined]


def _sheet_rows(fh: IO[bytes]) -> Iterator[tuple[int, list[tuple[int, str, str]]]]:
    """Each row as its number and (column, type, raw value) cells; elements are freed as they
    are read."""
    number = 0
    for _, element in iterparse(fh, events=("end",)):
        if element.tag != f"{MAIN}row":
            continue
        declared = element.get("r", "")
        number = int(declared) if declared.isascii() and declared.isdigit() else number + 1
        cells = []
        for position, cell in enumerate(element.iter(f"{MAIN}c")):
            kind = cell.get("t", "n")
            if kind == "inlineStr":
                raw = _text(cell)
            else:
                value = cell.find(f"{MAIN}v")
                raw = value.text or "" if value is not None else ""
            cells.append((_column_index(cell.get("r"), position), kind, raw))
        element.clear()
        yield number, cells


def _shared_strings(package: zipfile.ZipFile, wanted: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    if not wanted:
        return found
    last = max(wanted)
    try:
        fh = package.open("xl/sharedStrings.xml")
    except KeyError:
        return found
    with fh:
        index = 0
        for _, element in iterparse(fh, events=("end",)):
            if element.tag != f"{MAIN}si":
                continue
            if index in wanted:
                found[index] = _text(element)
            element.clear()
            if index >= last:
                break
            index += 1
    return found


def _number(raw: str) -> str:
    # what openpyxl's reader makes of a whole number stored as 12.0 or 12
    try:
        value = float(raw)
    except ValueError:
        return raw
    return str(int(value)) if value.is_integer() and "e" not in raw.lower() else raw


def _index(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() else None


def xlsx_head(path: Path, rows: int) -> list[tuple[int, list[str]]]:
    """The first ``rows`` non-empty rows of the first sheet as ``(row number, texts)``. The
    package must have passed ``check_xlsx_package``. Raises ``XlsxHeadError`` with a
    user-facing message."""
    try:
        with zipfile.ZipFile(path) as package:
            part = first_sheet_part(package)
            picked: list[tuple[int, list[tuple[int, str, str]]]] = []
            with package.open(part) as fh:
                for scanned, (number, cells) in enumerate(_sheet_rows(fh)):
                    if any(raw.strip() for _, _, raw in cells):
                        picked.append((number, cells))
                    if len(picked) >= rows or scanned >= MAX_SCANNED_ROWS:
                        break
            wanted = {
                i
                for _, row in picked
                for _, kind, raw in row
                if kind == "s" and (i := _index(raw)) is not None
            }
            strings = _shared_strings(package, wanted)
    except DefusedXmlException as exc:
        raise XlsxHeadError(
            "Workbook holds XML entity declarations, which are refused (they can expand "
            "without limit): save it again from Excel or as CSV."
        ) from exc
    except (KeyError, zipfile.BadZipFile, ValueError, SyntaxError, EOFError) as exc:
        raise XlsxHeadError(
            "Workbook is damaged: its first sheet could not be read. Save it again."
        ) from exc
    out = []
    for number, row in picked:
        width = max(column for column, _, _ in row) + 1
        values = [""] * width
        for column, kind, raw in row:
            if kind == "s":
                index = _index(raw)
                values[column] = strings.get(index, "") if index is not None else ""
            elif kind == "n":
                values[column] = _number(raw)
            elif kind == "b":
                values[column] = "True" if raw == "1" else "False"
            else:
                values[column] = raw
        while values and values[-1] == "":
            values.pop()
        out.append((number, values))
    return out
