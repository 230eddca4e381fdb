"""The names suppliers give to header fields and line columns, normalised for lookup.

>>> header_field("P.O. Number")
'po_number'
>>> line_column("Unit Price")
'unit_cost'
>>> line_column("Qty.")
'quantity'
"""

from __future__ import annotations

import re

_HEADER = {
    "po_number": [
        "po number",
        "po no",
        "po",
        "po #",
        "purchase order",
        "purchase order number",
        "order number",
        "order no",
        "order #",
        "order",
        "bestellnummer",
        "reference",
    ],
    "supplier": ["supplier", "vendor", "from", "seller", "lieferant", "supplier name"],
    "order_date": ["date", "order date", "po date", "issued", "issue date", "datum"],
    "expected_date": [
        "expected",
        "expected date",
        "delivery date",
        "due date",
        "ship date",
        "eta",
        "expected delivery",
    ],
    "currency": ["currency", "ccy", "währung", "waehrung"],
    "subtotal": ["subtotal", "sub total", "net", "net total", "net amount", "zwischensumme"],
    "tax": ["tax", "vat", "sales tax", "gst", "mwst", "tax amount"],
    "total": ["total", "grand total", "total amount", "amount due", "gesamt", "order total"],
}
_LINE = {
    "line_number": ["line", "line no", "line number", "#", "pos", "position", "no"],
    "sku": ["sku", "our sku", "item", "item code", "product code", "article", "artikel", "code"],
    "supplier_sku": [
        "supplier sku",
        "vendor sku",
        "supplier part",
        "mfr part",
        "mpn",
        "part number",
        "supplier code",
        "vendor part",
        "part no",
    ],
    "description": [
        "description",
        "name",
        "product",
        "product name",
        "item description",
        "title",
        "bezeichnung",
    ],
    "quantity": ["quantity", "qty", "units", "ordered", "menge", "amount ordered", "pcs"],
    "unit_cost": [
        "unit cost",
        "unit price",
        "price",
        "cost",
        "each",
        "rate",
        "einzelpreis",
    ],
    "line_total": [
        "line total",
        "total",
        "amount",
        "extended",
        "ext price",
        "net amount",
        "gesamtpreis",
        "line amount",
    ],
    "image_url": ["image", "image url", "picture", "photo", "image link", "bild"],
}


def normalise(name: str) -> str:
    s = name.strip().lower().replace(".", "").replace("n°", "no")
    s = re.sub(r"[_:]+", " ", s)
    return re.sub(r"\s+", " ", s).strip()


def _index(table: dict[str, list[str]]) -> dict[str, str]:
    return {normalise(alias): key for key, aliases in table.items() for alias in [key, *aliases]}


HEADER_ALIASES = _index(_HEADER)
LINE_ALIASES = _index(_LINE)


def header_field(name: str) -> str | None:
    return HEADER_ALIASES.get(normalise(name))


def line_column(name: str) -> str | None:
    return LINE_ALIASES.get(normalise(name))
