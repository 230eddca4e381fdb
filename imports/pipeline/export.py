"""Export writers: products to CSV or XLSX in Intake's layout or a store's. No ORM.

Rows come in as tuples in ``FIELDS`` order, in chunks; CSV goes out as text chunks, XLSX is
written row by row by openpyxl's write-only mode to a file. Memory stays flat however many
rows there are. Every text cell is formula-safe: a cell that starts with ``= + - @``, a tab
or a carriage return gets a leading ``'``, so a spreadsheet shows it instead of running it
(the import presets take the ``'`` off again, so an export imports back unchanged).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .markup import text_to_html
from .presets import FORMULA_PREFIXES
from .validation import FIELDS

Row = Sequence[object]  # one product's values in FIELDS order
_F = {name: i for i, name in enumerate(FIELDS)}


def formula_safe(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _handle(sku: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", sku.lower()).strip("-") or "product"


def _intake(row: Row) -> list[object]:
    return list(row)


SHOPIFY_HEADER = [
    "Handle",
    "Title",
    "Body (HTML)",
    "Vendor",
    "Product Category",
    "Type",
    "Tags",
    "Published",
    "Option1 Name",
    "Option1 Value",
    "Variant SKU",
    "Variant Grams",
    "Variant Inventory Tracker",
    "Variant Inventory Qty",
    "Variant Inventory Policy",
    "Variant Fulfillment Service",
    "Variant Price",
    "Variant Compare At Price",
    "Variant Requires Shipping",
    "Variant Taxable",
    "Variant Barcode",
    "Image Src",
    "Image Position",
    "Gift Card",
    "Status",
]


def _shopify(row: Row) -> list[object]:
    sku = str(row[_F["sku"]])
    # one product per row (its own handle): Intake keeps no variant grouping
    return [
        _handle(sku),
        row[_F["name"]],
        text_to_html(str(row[_F["description"]])),
        row[_F["brand"]],
        "",
        row[_F["category"]],
        "",
        "TRUE" if row[_F["status"]] == "active" else "FALSE",
        "Title",
        "Default Title",
        sku,
        "",
        "shopify",
        row[_F["quantity"]],
        "deny",
        "manual",
        row[_F["price"]],
        "",
        "TRUE",
        "TRUE",
        row[_F["barcode"]],
        "",
        "",
        "FALSE",
        row[_F["status"]],
    ]


WOOCOMMERCE_HEADER = [
    "ID",
    "Type",
    "SKU",
    "GTIN, UPC, EAN, or ISBN",
    "Name",
    "Published",
    "Is featured?",
    "Visibility in catalog",
    "Short description",
    "Description",
    "Tax status",
    "In stock?",
    "Stock",
    "Backorders allowed?",
    "Sale price",
    "Regular price",
    "Categories",
    "Tags",
    "Images",
    "Parent",
    "Brands",
]


def _woocommerce(row: Row) -> list[object]:
    quantity = int(row[_F["quantity"]] or 0)
    description = text_to_html(str(row[_F["description"]])).replace("\n", "\\n")
    return [
        "",
        "simple",
        row[_F["sku"]],
        row[_F["barcode"]],
        row[_F["name"]],
        1 if row[_F["status"]] == "active" else -1,
        0,
        "visible",
        "",
        description,
        "taxable",
        1 if quantity > 0 else 0,
        quantity,
        0,
        "",
        row[_F["price"]],
        str(row[_F["category"]]).replace(",", "\\,"),
        "",
        "",
        "",
        row[_F["brand"]],
    ]


@dataclass(frozen=True)
class ExportLayout:
    name: str
    header: list[str]
    row: Callable[[Row], list[object]]


LAYOUTS: dict[str, ExportLayout] = {
    "intake": ExportLayout("intake", list(FIELDS), _intake),
    "shopify": ExportLayout("shopify", SHOPIFY_HEADER, _shopify),
    "woocommerce": ExportLayout("woocommerce", WOOCOMMERCE_HEADER, _woocommerce),
}
FORMATS = ("csv", "xlsx")


class _Line:
    def __init__(self) -> None:
        self.buffer = io.StringIO()

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def csv_chunks(layout: ExportLayout, chunks: Iterable[Sequence[Row]]) -> Iterator[str]:
    """The CSV text (a BOM so Excel reads UTF-8, the header, then one piece per chunk)."""
    out = _Line()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(layout.header)
    yield "\ufeff" + out.take()
    for chunk in chunks:
        writer.writerows([formula_safe(v) for v in layout.row(r)] for r in chunk)
        yield out.take()


# XML 1.0, and so a worksheet, cannot hold control characters other than tab, newline and
# carriage return: openpyxl refuses a cell that has one, which failed the whole file
# what XML 1.0 forbids (U+FFFE and U+FFFF too: Excel called such a workbook damaged)
_NOT_IN_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xlsx_text(value: object) -> str:
    """``value`` as formula-safe text a worksheet cell can hold: control characters XML cannot
    carry are left out of the file (the database keeps them; the CSV export has them)."""
    text = "" if value is None else str(value)
    return formula_safe(_NOT_IN_XLSX.sub("", text))  # dropped first: '\x01=1' is a formula


def _xlsx_value(value: object) -> object:
    # numbers stay numbers (a spreadsheet can sum them); everything else is guarded text
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return value
    return xlsx_text(value)


def write_xlsx(
    layout: ExportLayout,
    chunks: Iterable[Sequence[Row]],
    path: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the products to an .xlsx at ``path`` in write-only mode; returns the row count."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Products")
    ws.append(layout.header)
    count = 0
    for chunk in chunks:
        for row in chunk:
            ws.append([_xlsx_value(v) for v in layout.row(row)])
        count += len(chunk)
        if progress is not None:
            progress(len(chunk))
    wb.save(path)
    return count
