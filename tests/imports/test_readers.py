"""Readers and header mapping on their own: bytes in, header and rows (or a clear error) out."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook

from imports.pipeline.readers import FileReadError, open_source
from imports.pipeline.validation import HeaderError, map_header


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read(tmp_path, data: bytes, name="f.csv"):
    source = open_source(_write(tmp_path, name, data), name)
    rows = [(number, values) for number, values in source.rows()]
    for size in (1, 2, 3, 500):  # the validator's runs give exactly the same rows
        runs = list(source.batches(size))
        assert all(0 < len(values) <= size for _, values in runs)
        assert [(n, list(v)) for numbers, values in runs for n, v in zip(numbers, values)] == rows
    return source.header, rows, source.count_rows()


TEXT = "sku,name,price\nA-1,Café crème,3.50\nA-2,Thé,2\n"


@pytest.mark.parametrize(
    "encoding,data",
    [
        ("utf-8", TEXT.encode("utf-8")),
        ("utf-8 with BOM", b"\xef\xbb\xbf" + TEXT.encode("utf-8")),
        ("utf-16", TEXT.encode("utf-16")),
        ("windows-1252", TEXT.encode("cp1252")),
    ],
)
def test_csv_encodings_are_detected(tmp_path, encoding, data):
    header, rows, count = _read(tmp_path, data)
    assert header == ["sku", "name", "price"]
    assert rows == [(2, ["A-1", "Café crème", "3.50"]), (3, ["A-2", "Thé", "2"])]
    assert count == 2


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path, delimiter):
    data = TEXT.replace(",", delimiter).encode()
    header, rows, _ = _read(tmp_path, data)
    assert header == ["sku", "name", "price"]
    assert rows[0][1] == ["A-1", "Café crème", "3.50"]


def test_quoted_fields_may_hold_newlines_and_delimiters(tmp_path):
    data = b'sku,name,description,price\nA-1,"Desk, oak","Line one\nLine two",10\nA-2,B,C,1\n'
    _, rows, count = _read(tmp_path, data)
    assert rows[0] == (2, ["A-1", "Desk, oak", "Line one\nLine two", "10"])
    assert rows[1][0] == 3
    assert count == 2


def test_blank_and_space_only_lines_are_not_rows_but_keep_their_numbers(tmp_path):
    data = b"\n  \nsku,name,price\nA-1,B,1\n\n   \nA-2,C,2\n,\n \t\nA-3,D,3"
    header, rows, count = _read(tmp_path, data)
    assert header == ["sku", "name", "price"]
    assert rows == [
        (4, ["A-1", "B", "1"]),
        (7, ["A-2", "C", "2"]),
        (8, ["", ""]),  # a lone delimiter is a row of empty values, which validation refuses
        (10, ["A-3", "D", "3"]),
    ]
    assert count == 4


def test_a_one_column_file_reads_the_same_in_runs(tmp_path):
    _, rows, count = _read(tmp_path, b"sku\nA-1\n\nA-2\n  \nA-3\n")
    assert rows == [(2, ["A-1"]), (4, ["A-2"]), (6, ["A-3"])] and count == 3


def test_a_file_broken_part_way_fails_in_runs_as_row_by_row(tmp_path):
    data = b'sku,name,price\nA-1,x,1\nA-2,x,2\nA-3,"never closed,3\nA-4,x,4\n'
    source = open_source(_write(tmp_path, "f.csv", data), "f.csv")
    with pytest.raises(FileReadError) as by_row:
        list(source.rows())
    runs = source.batches(2)
    assert list(next(runs)[0]) == [2, 3]  # the rows before the break still come
    with pytest.raises(FileReadError) as in_runs:
        list(runs)
    assert str(in_runs.value) == str(by_row.value)
    assert "unterminated quote" in str(in_runs.value)


def test_unterminated_quote_is_a_file_error(tmp_path):
    data = b'sku,name,price\nA-1,"never closed,1\nA-2,x,2\n'
    source = open_source(_write(tmp_path, "f.csv", data), "f.csv")
    with pytest.raises(FileReadError, match="unterminated quote"):
        source.count_rows()


def test_empty_file(tmp_path):
    with pytest.raises(FileReadError, match="File is empty"):
        _read(tmp_path, b"")
    with pytest.raises(FileReadError, match="File is empty"):
        _read(tmp_path, b"  \n\n")


def test_binary_file_is_refused(tmp_path):
    with pytest.raises(FileReadError, match="binary"):
        _read(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))


def test_text_in_an_unsupported_encoding_is_refused(tmp_path):
    data = ("sku,name,price\n" + "".join(f"A-{i},商品名前テスト{i},1\n" for i in range(50))).encode(
        "shift_jis"
    )
    with pytest.raises(FileReadError, match="not UTF-8, UTF-16 or Windows-1252"):
        _read(tmp_path, data)


def test_xlsx_first_sheet_is_streamed(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["SKU", "Name", "Unit Price", "Qty"])
    ws.append(["X-1", "Bolt", 0.25, 100])
    ws.append([None, None, None, None])
    ws.append(["X-2", "Nut", 3, 7.0])
    wb.create_sheet("Other").append(["ignored"])
    buf = io.BytesIO()
    wb.save(buf)
    header, rows, count = _read(tmp_path, buf.getvalue(), "f.xlsx")
    assert header == ["SKU", "Name", "Unit Price", "Qty"]
    assert rows == [(2, ["X-1", "Bolt", "0.25", "100"]), (4, ["X-2", "Nut", "3", "7"])]
    assert count == 2


def test_xlsx_that_is_not_a_workbook(tmp_path):
    with pytest.raises(FileReadError, match=r"not an \.xlsx workbook"):
        _read(tmp_path, b"sku,name,price\n", "f.xlsx")


def test_header_aliases_case_and_spacing():
    mapping = map_header([" Item SKU ", "PRODUCT_NAME", "Unit  Price", "qty", "Colour"])
    assert mapping.columns == {"sku": 0, "name": 1, "price": 2, "quantity": 3}
    assert mapping.unknown == ["Colour"]


def test_missing_required_column_names_what_is_missing_and_found():
    with pytest.raises(HeaderError) as exc:
        map_header(["sku", "name", "cost"])
    assert str(exc.value) == "Column 'price' is missing (found: sku, name, cost)."


def test_no_recognizable_header():
    with pytest.raises(HeaderError, match="No recognizable header row"):
        map_header(["A-1", "Widget", "9.99"])


def _csv_count(source) -> int:
    """What the csv reader counts, the byte-level count turned off."""
    records = source._count_records_by_bytes
    source._count_records_by_bytes = lambda: None
    try:
        return source.count_rows()
    finally:
        source._count_records_by_bytes = records


_PIECES = [
    "plain",
    "",
    " ",
    '"quoted"',
    '"with, delimiter"',
    '"two\nlines"',
    '"two\r\nlines"',
    '"esc""aped"',
    '""',
    '""""',
    'x"y',  # a literal quote in an unquoted field
    'end"',  # and one at its end
    '"closed"x',  # text after a closing quote: the reader refuses it
    "café",
    "tab\there",
]


@pytest.mark.parametrize("seed", range(200))
def test_the_byte_level_row_count_is_the_csv_readers_or_stands_aside(tmp_path, monkeypatch, seed):
    """On random files (quotes, escaped quotes, line breaks inside and outside fields, CRLF,
    lone CR, blank lines, a BOM, Windows-1252, no final line end), read in tiny blocks so
    fields cross block ends: the byte-level count is exactly the csv reader's, or None."""
    import random

    from imports.pipeline import readers

    rnd = random.Random(seed)
    block = rnd.choice([1, 5, 16, 64, 4096])
    monkeypatch.setattr(readers, "COUNT_BLOCK", block)
    monkeypatch.setattr(readers, "COUNT_BLOCK_MAX", 2 * block + 256)
    # a third of the files use only what the byte-level count can vouch for; a third also
    # have a few lone CRs or blank lines; a third a few quotes the reader takes as text or
    # refuses
    kind = seed % 3
    end = rnd.choice(["\n", "\r\n"])
    odd_end = rnd.choice(["\r", "\n\n", "\n \n", "\r\n\r\n"])
    odd = 0.1 if kind else 0.0

    def cell():
        return rnd.choice(_PIECES[10:] if kind == 2 and rnd.random() < odd else _PIECES[:10])

    lines = ["sku,name,price"]
    for _ in range(rnd.randrange(1, 60)):
        lines.append(",".join(cell() for _ in range(3)))
    text = "".join(line + (odd_end if kind == 1 and rnd.random() < odd else end) for line in lines)
    if rnd.random() < 0.3:
        text = text.rstrip("\r\n")
    clean = kind == 0
    encoding = rnd.choice(["utf-8", "utf-8-sig", "cp1252"])
    path = _write(tmp_path, "f.csv", text.encode(encoding))
    try:
        source = open_source(path, "f.csv")
    except FileReadError:
        return
    try:
        expected = _csv_count(source)
    except FileReadError:
        expected = None  # a broken file: the reader names the error, so the bytes must not count
    fast = source._count_records_by_bytes()
    if fast is not None:
        assert expected is not None and fast - 1 == expected
    if clean and "\r" not in text.replace("\r\n", ""):
        assert fast is not None  # well-formed files take the fast path


def test_row_count_finds_bad_bytes_past_the_sample_the_encoding_came_from(tmp_path):
    rows = b"".join(b"A-%d,Widget,1\n" % i for i in range(10_000))  # past the 64 KiB sample
    path = _write(tmp_path, "f.csv", b"sku,name,price\n" + rows + b"B-1,Bad \xff byte,1\n")
    source = open_source(path, "f.csv")
    assert source.encoding == "utf-8"
    assert source._count_records_by_bytes() is None
    with pytest.raises(FileReadError, match="File is not valid utf-8 text near line"):
        source.count_rows()


def test_row_count_stands_aside_for_blank_lines_and_still_counts_them_out(tmp_path):
    source = open_source(_write(tmp_path, "f.csv", b"sku,name,price\nA,B,1\n\nC,D,2\n"), "f.csv")
    assert source._count_records_by_bytes() is None
    assert source.count_rows() == 2
