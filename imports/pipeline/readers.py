"""Readers: bytes on disk to a header and a stream of rows. No ORM, no validation.

CSV: UTF-8 (with or without BOM), UTF-16 (BOM), Windows-1252/Latin-1 (detected); delimiter
sniffed among ``, ; TAB |``; quoted fields may hold newlines. XLSX: the first sheet, read-only and
streamed. Rows are never loaded whole; ``count_rows()`` is a separate streaming pass.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import itertools
import re
import zipfile
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from .xlsx_head import XlsxHeadError, xlsx_head

SAMPLE_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
# the byte-level row count: its block size, and how far a block may grow to end outside quotes
COUNT_BLOCK = 4 * 1024 * 1024
COUNT_BLOCK_MAX = 8 * 1024 * 1024
# encodings in which a quote, a delimiter, CR and LF are always those single bytes
_ASCII_BASED = frozenset(("utf-8", "utf-8-sig", "cp1252", "latin-1"))


@functools.cache
def _quoted_field(delimiter: bytes) -> re.Pattern[bytes]:
    """One whole quoted field, escaped quotes ("") and all, that is a whole field of its
    record: a delimiter, a line end or the start before its opening quote, and one of those
    (or the end) after its closing quote."""
    edge = b"[^" + re.escape(delimiter) + rb"\r\n]"
    return re.compile(rb'"(?<!' + edge + rb'")[^"]*(?:""[^"]*)*"(?!' + edge + b")")


_MORE, _UNSURE = -1, -2
csv.field_size_limit(10 * 1024 * 1024)


class FileReadError(Exception):
    """The file as a whole cannot be read; the message is for the user."""


class Row(NamedTuple):
    number: int  # 1-based, the header is row 1, as a spreadsheet shows it
    values: list[str]


class TabularSource:
    header: list[str]

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """The data rows as ``(number, values)`` (a ``Row``, or a plain tuple on hot paths)."""
        raise NotImplementedError

    def batches(self, size: int) -> Iterator[tuple[Sequence[int], Sequence[list[str]]]]:
        """The data rows in runs of at most ``size``, as ``(numbers, values)``."""
        rows = self.rows()
        while records := list(itertools.islice(rows, size)):
            numbers, values = zip(*records, strict=True)
            yield numbers, values

    def count_rows(self) -> int:
        return sum(1 for _ in self.rows())

    def head(self, count: int) -> list[tuple[int, list[str]]]:
        """The first ``count`` data rows: what a preview shows, in bounded work."""
        return list(itertools.islice(self.rows(), count))


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        # UTF-16 without a BOM still shows a NUL in every other byte of ASCII text
        even, odd = sample[0::2], sample[1::2]
        if len(sample) >= 4 and odd.count(0) > len(odd) * 0.9 and even.count(0) == 0:
            return "utf-16-le"
        if len(sample) >= 4 and even.count(0) > len(even) * 0.9 and odd.count(0) == 0:
            return "utf-16-be"
        raise FileReadError(
            "File looks binary, not CSV text. Upload a .csv (UTF-8, UTF-16 or Windows-1252) "
            "or an .xlsx workbook."
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    name = (best.encoding if best else "") or ""
    if name in {"cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "mac_roman"}:
        try:
            sample.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            return "latin-1"
    found = f" (it looks like {name})" if name else ""
    raise FileReadError(f"File is not UTF-8, UTF-16 or Windows-1252 text{found}.")


def sniff_delimiter(text: str) -> str:
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        # the sniffer gives up on one-line files: take the commonest candidate of the header
        counts = {d: lines[0].count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


class CsvSource(TabularSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
        if not sample.strip():
            raise FileReadError("File is empty.")
        self.encoding = detect_encoding(sample)
        text = sample.decode(self.encoding, errors="ignore")
        self.delimiter = sniff_delimiter(text)
        try:
            first = next(self._records(), None)
        except FileReadError:
            raise
        if first is None:
            raise FileReadError("File is empty.")
        self.header = [h.strip() for h in first[1]]

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        with self.path.open(encoding=self.encoding, newline="") as fh:
            reader = csv.reader(fh, delimiter=self.delimiter, strict=True)
            record = 0
            try:
                for values in reader:
                    record += 1
                    if not _blank(values):
                        yield record, values
            except csv.Error as exc:
                raise FileReadError(
                    f"Row {record + 1} (line {reader.line_num}): {_csv_error(exc)}"
                ) from exc
            except UnicodeDecodeError as exc:
                raise FileReadError(
                    f"File is not valid {self.encoding} text near line {reader.line_num + 1}; "
                    "save it as UTF-8 and upload it again."
                ) from exc

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        # plain (number, values) tuples, and no generator of our own between the caller and
        # _records: this runs once per row of files with millions of rows
        return itertools.islice(self._records(), 1, None)

    def batches(self, size: int) -> Iterator[tuple[Sequence[int], Sequence[list[str]]]]:
        """``rows()`` in runs of at most ``size``, read straight from the csv reader: no step
        of ours per row unless a run holds a blank line."""
        try:
            with self.path.open(encoding=self.encoding, newline="") as fh:
                reader = csv.reader(fh, delimiter=self.delimiter, strict=True)
                record = 0
                for values in reader:  # up to the header: the first record that is not blank
                    record += 1
                    if not _blank(values):
                        break
                while chunk := list(itertools.islice(reader, size)):
                    first, record = record + 1, record + len(chunk)
                    if min(map(len, chunk)) > 1:  # a blank line is one value or none
                        yield range(first, record + 1), chunk
                        continue
                    kept = [i for i, values in enumerate(chunk) if not _blank(values)]
                    if kept:
                        yield [first + i for i in kept], [chunk[i] for i in kept]
        except (csv.Error, UnicodeDecodeError):
            for _ in self._records():  # raises the error, naming its row and line
                pass
            raise

    def count_rows(self) -> int:
        """Data rows, counted the way ``_records`` counts them (blank lines are not rows)."""
        records = self._count_records_by_bytes()
        if records is not None:
            return max(records - 1, 0)
        try:
            with self.path.open(encoding=self.encoding, newline="") as fh:
                reader = csv.reader(fh, delimiter=self.delimiter, strict=True)
                records = sum(1 for values in reader if not _blank(values))
        except (csv.Error, UnicodeDecodeError):
            records = sum(1 for _ in self._records())  # raises the error, with its row number
        return max(records - 1, 0)

    def _count_records_by_bytes(self) -> int | None:
        """The csv reader's record count from a scan of the bytes, or None when only the
        reader itself can tell (then it counts, and names any error).

        The csv module takes a second for a million rows; this takes a tenth of it, all at C
        speed: each block's well-formed quoted fields are replaced by a marker with one
        ``re.sub``, and what is left holds the record ends. It answers only when that is
        certain: every quoted field is a whole field (a delimiter, a line end or the start
        before it; one of those after it), no quote is left, no lone CR ends a line, every
        record holds a delimiter (so none is blank) and the bytes decode. A block ends after
        its last LF; one whose quotes do not pair up (a quoted field runs on) grows.
        """
        if self.encoding not in _ASCII_BASED:
            return None
        delimiter = self.delimiter.encode("ascii")
        drop = bytes(b for b in range(256) if b not in delimiter + b"\r\n")
        quoted_field = _quoted_field(delimiter)
        records = 0
        with self.path.open("rb") as fh:
            if self.encoding == "utf-8-sig":
                fh.read(len(codecs.BOM_UTF8))
            buffer = b""
            while True:
                block = fh.read(COUNT_BLOCK)
                buffer += block
                if block:
                    cut = buffer.rfind(b"\n") + 1
                    head = buffer[:cut]
                elif buffer:  # the last line has no line end of its own
                    cut, head = len(buffer), buffer + b"\n"
                else:
                    return records
                found = self._records_in(head, quoted_field, drop) if cut else _MORE
                if found == _UNSURE or (found == _MORE and not block):
                    return None
                if found == _MORE:
                    if len(buffer) > COUNT_BLOCK_MAX:
                        return None
                    continue
                records += found
                buffer = buffer[cut:]

    def _records_in(self, head: bytes, quoted_field: re.Pattern[bytes], drop: bytes) -> int:
        """Records in ``head`` (whole lines, from a record's start), ``_MORE`` if a quoted
        field runs past its end, ``_UNSURE`` if only the csv reader can tell."""
        if head.count(b'"') % 2:
            return _MORE
        try:
            head.decode(self.encoding)
        except UnicodeDecodeError:
            return _UNSURE
        if b'"' in head:
            outside = quoted_field.sub(b"", head)
            if b'"' in outside:
                return _UNSURE  # a quote inside an unquoted field, or text after a closing one
        else:
            outside = head
        ends_of_lines = outside.translate(None, drop)  # delimiters, CRs and LFs, in order
        if b"\r" in ends_of_lines:
            ends_of_lines = ends_of_lines.replace(b"\r\n", b"\n")
            if b"\r" in ends_of_lines:
                return _UNSURE  # a lone CR ends a record too: leave those files to the reader
        if ends_of_lines.startswith(b"\n") or b"\n\n" in ends_of_lines:
            return _UNSURE  # a record without a delimiter: it may be blank
        return ends_of_lines.count(b"\n")


def _blank(values: list[str]) -> bool:
    """A blank line (or one of only spaces) is not a row."""
    return not values or (len(values) == 1 and not values[0].strip())


def _csv_error(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text or "EOF" in text:
        return "a quoted field is never closed (unterminated quote)."
    return f"the CSV is malformed ({text})."


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


# An .xlsx is a zip of XML parts. What openpyxl would inflate is bounded before it opens one:
# a workbook has tens of parts, real sheets compress 5-30 times, and a decompression bomb
# (one small entry that inflates to gigabytes) shows itself in the central directory, which
# these checks read without inflating anything. Python's zipfile never inflates an entry past
# its declared size, so the declared sizes are the real bound.
XLSX_MAX_ENTRIES = 1000
XLSX_MAX_UNCOMPRESSED_BYTES = 1024**3
XLSX_MAX_RATIO = 200
# an entry this small may compress as well as it likes (tiny parts of repeated markup)
XLSX_RATIO_FLOOR_BYTES = 1024**2


def check_xlsx_package(path: Path) -> None:
    """Refuse a zip that is not a workbook or would inflate past the limits; reads only the
    zip's directory (bounded work, safe on a web request). Raises ``FileReadError``."""
    not_xlsx = "File is not an .xlsx workbook (it is not a valid Excel file)."
    try:
        with path.open("rb") as fh:
            end = zipfile._EndRecData(fh)  # the end record only: its entry count
            if end is None:
                raise FileReadError(not_xlsx)
            if end[zipfile._ECD_ENTRIES_TOTAL] > XLSX_MAX_ENTRIES:
                raise FileReadError(
                    f"File is not a plausible .xlsx workbook: it holds "
                    f"{end[zipfile._ECD_ENTRIES_TOTAL]:,} parts (at most {XLSX_MAX_ENTRIES:,})."
                )
            with zipfile.ZipFile(fh) as package:
                entries = package.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise FileReadError(not_xlsx) from exc
    if len(entries) > XLSX_MAX_ENTRIES:
        raise FileReadError(
            f"File is not a plausible .xlsx workbook: it holds {len(entries):,} parts "
            f"(at most {XLSX_MAX_ENTRIES:,})."
        )
    total = sum(e.file_size for e in entries)
    if total > XLSX_MAX_UNCOMPRESSED_BYTES:
        raise FileReadError(
            f"Workbook is too large once unpacked: {total / 1024**2:,.0f} MB "
            f"(at most {XLSX_MAX_UNCOMPRESSED_BYTES / 1024**2:,.0f} MB). Save it as CSV, "
            "or split it."
        )
    for entry in entries:
        if entry.file_size > XLSX_RATIO_FLOOR_BYTES and (
            entry.file_size > XLSX_MAX_RATIO * max(entry.compress_size, 1)
        ):
            raise FileReadError(
                f"Workbook part '{entry.filename[:100]}' would unpack to "
                f"{entry.file_size / max(entry.compress_size, 1):,.0f} times its size "
                f"(at most {XLSX_MAX_RATIO}): the file looks like a decompression bomb."
            )


_ENTITIES_REFUSED = (
    "Workbook holds XML entity declarations, which are refused (they can expand without "
    "limit): save it again from Excel or as CSV."
)


def _require_defusedxml() -> None:
    """openpyxl parses with defusedxml (no entity expansion, no external entities) only when
    it is installed; it is a pinned requirement, and a workbook is never parsed without it."""
    import openpyxl

    if not openpyxl.DEFUSEDXML:
        raise RuntimeError("defusedxml is not installed: refusing to parse .xlsx files")


class XlsxSource(TabularSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        check_xlsx_package(path)
        _require_defusedxml()
        # the header without openpyxl, which would load every shared string first: this runs
        # on the web request that takes the upload
        first = self._head(1)
        if not first:
            raise FileReadError("File is empty: the first sheet has no rows.")
        self.header = [h.strip() for h in first[0][1]]

    def _head(self, count: int) -> list[tuple[int, list[str]]]:
        try:
            return xlsx_head(self.path, count)
        except XlsxHeadError as exc:
            raise FileReadError(str(exc)) from exc

    def head(self, count: int) -> list[tuple[int, list[str]]]:
        return self._head(count + 1)[1:]

    def _rows(self) -> Iterator[Row]:
        from defusedxml import DefusedXmlException
        from openpyxl import load_workbook

        try:
            wb = load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many types for a broken package
            if isinstance(exc, DefusedXmlException) or isinstance(
                exc.__cause__, DefusedXmlException
            ):  # openpyxl wraps what went wrong in a part in a ValueError
                raise FileReadError(_ENTITIES_REFUSED) from exc
            raise FileReadError(
                "File is not an .xlsx workbook (it could not be opened as Excel)."
            ) from exc

        try:
            ws = wb.worksheets[0]
            for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
                cells = [_cell(v) for v in values]
                while cells and cells[-1] == "":
                    cells.pop()
                if cells:
                    yield Row(number, cells)
        except DefusedXmlException as exc:
            raise FileReadError(_ENTITIES_REFUSED) from exc
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, SyntaxError) as exc:
            # a part that does not inflate or parse (SyntaxError: broken XML)
            raise FileReadError(
                "Workbook is damaged: its first sheet could not be read. Save it again."
            ) from exc
        finally:
            wb.close()

    def rows(self) -> Iterator[Row]:
        rows = self._rows()
        next(rows, None)
        yield from rows


def open_source(path: Path, filename: str) -> TabularSource:
    """The right reader for a stored upload; raises FileReadError with a user-facing message."""
    suffix = Path(filename).suffix.lower()
    if suffix in {".xlsx", ".xlsm"}:
        return XlsxSource(path)
    if suffix in {".xls"}:
        raise FileReadError("Old .xls workbooks are not supported: save the sheet as .xlsx or CSV.")
    return CsvSource(path)
