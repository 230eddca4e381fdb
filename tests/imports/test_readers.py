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
