"""JSON purchase orders: an object with header fields and a ``lines`` list, keys by alias."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from .aliases import header_field, line_column
from .document import ParsedLine, ParsedOrder, ParseError
from .numbers import parse_currency, parse_date, parse_decimal

MAX_BYTES = 20 * 1024 * 1024
LABELLED = "named field in the JSON document"


def read_json(path: Path) -> ParsedOrder:
    try:
        data = json.loads(path.read_bytes(), parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"File is not valid JSON ({exc}).") from exc
    except RecursionError as exc:  # '[[[[…' thousands deep
        raise ParseError("The JSON is nested too deeply to be an order.") from exc
    if isinstance(data, dict) and isinstance(data.get("purchase_order"), dict):
        data = data["purchase_order"]
    if not isinstance(data, dict):
        raise ParseError("The JSON must be an object with the order's fields and 'lines'.")
    order = ParsedOrder(source_format="json", template="json")
    lines: Any = None
    for key, value in data.items():
        if key.lower() in ("lines", "items", "line_items", "lineitems"):
            lines = value
            continue
        name = header_field(key)
        if name is None or isinstance(value, dict | list):
            continue
        _field(order, name, value)
    if not isinstance(lines, list):
        raise ParseError("The JSON has no 'lines' list.")
    for index, raw in enumerate(lines, start=1):
        if not isinstance(raw, dict):
            order.warnings.append(f"Line {index} is not an object; skipped.")
            continue
        line = ParsedLine(line_number=len(order.lines) + 1, reasons=[LABELLED])
        for key, value in raw.items():
            column = line_column(key)
            if column in ("quantity", "unit_cost", "line_total"):
                parsed = parse_decimal(value)
                if parsed is None and value not in (None, ""):
                    line.confidence = 0.3
                    line.reasons.append(f"{column} '{value}' is not a number")
                setattr(line, column, parsed)
            elif column in ("sku", "supplier_sku"):
                setattr(line, column, str(value or "").strip()[:64])
            elif column in ("description", "image_url"):
                setattr(line, column, str(value or "").strip())
        order.add_line(line)
    return order


def _field(order: ParsedOrder, name: str, value: Any) -> None:
    if name in ("subtotal", "tax", "total"):
        parsed = parse_decimal(value)
    elif name in ("order_date", "expected_date"):
        parsed = parse_date(value)
    elif name == "currency":
        parsed = parse_currency(value)
    else:
        parsed = str(value).strip() or None
    if parsed is None:
        order.set(name, None, 0.0, f"'{value}' could not be read as {name}")
    else:
        order.set(name, parsed, 1.0, LABELLED)
