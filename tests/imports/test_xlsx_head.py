"""The bounded header/preview read of a workbook agrees with openpyxl's full read."""

from __future__ import annotations

from decimal import Decimal

import openpyxl
import pytest

from imports.pipeline.readers import FileReadError, XlsxSource
from imports.pipeline.xlsx_head import xlsx_head


def _book(tmp_path, rows, *, title_first="Products"):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title_first
    for row in rows:
        ws.append(row)
    other = wb.create_sheet("Notes")
    other.append(["not", "this", "sheet"])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    return path


def test_head_matches_openpyxl_on_strings_numbers_gaps_and_unicode(tmp_path):
    rows = [
        ["SKU", "Name", None, "Price", "Qty"],
        ["A-1", "Lampe à pied", None, 9.99, 12],
        [None, None, None, None, None],
        ["B-2", "双肩包", "x", Decimal("1200.5"), 0],
        ["C-3", "=not a formula", None, 3, True],
    ]
    path = _book(tmp_path, rows)
    source = XlsxSource(path)
    assert source.header == ["SKU", "Name", "", "Price", "Qty"]
    assert source.head(3) == [(n, v) for n, v in list(source.rows())[:3]]


def test_head_reads_the_first_sheet_in_workbook_order(tmp_path):
    path = _book(tmp_path, [["sku", "name", "price"]])
    assert xlsx_head(path, 1) == [(1, ["sku", "name", "price"])]


def test_an_empty_first_sheet_is_a_clear_error(tmp_path):
    path = _book(tmp_path, [])
    with pytest.raises(FileReadError, match="no rows"):
        XlsxSource(path)
