"""The parse result: plain dataclasses that round-trip through JSON (a stage's stored output)."""

from __future__ import annotations

import datetime as dt
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from ...pipeline.text import storable, valid_text

__all__ = ["storable", "valid_text"]

# the most lines a reader takes before it stops with a ``ParseError`` (``parse_document``'s
# ``max_lines``): a huge file is refused as soon as it is known to be too long, not once it
# was read whole into memory
LINE_LIMIT: ContextVar[int | None] = ContextVar("LINE_LIMIT", default=None)

HEADER_FIELDS = (
    "po_number",
    "supplier",
    "order_date",
    "expected_date",
    "currency",
    "subtotal",
    "tax",
    "total",
)
REQUIRED_FIELDS = ("po_number", "supplier", "order_date", "currency", "total")
MONEY_FIELDS = ("subtotal", "tax", "total")
DATE_FIELDS = ("order_date", "expected_date")
LINE_FIELDS = (
    "sku",
    "supplier_sku",
    "description",
    "quantity",
    "unit_cost",
    "line_total",
    "image_url",
)


class ParseError(Exception):
    """The document cannot be read as a purchase order; the message is for the user."""


@dataclass
class FieldValue:
    value: Any = None  # str, Decimal or date
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)


@dataclass
class ParsedLine:
    line_number: int
    sku: str = ""
    supplier_sku: str = ""
    description: str = ""
    quantity: Decimal | None = None
    unit_cost: Decimal | None = None
    line_total: Decimal | None = None
    image_url: str = ""
    confidence: float = 1.0
    reasons: list[str] = field(default_factory=list)


@dataclass
class ParsedOrder:
    source_format: str
    fields: dict[str, FieldValue] = field(default_factory=dict)
    lines: list[ParsedLine] = field(default_factory=list)
    template: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    confidence: float = 0.0

    def add_line(self, line: ParsedLine) -> None:
        limit = LINE_LIMIT.get()
        if limit is not None and len(self.lines) >= limit:
            raise ParseError(
                f"The order has more than {limit:,} lines; at most {limit:,} are read "
                "(PO_MAX_LINES). Split it into smaller orders and upload those."
            )
        self.lines.append(line)

    def value(self, name: str) -> Any:
        f = self.fields.get(name)
        return f.value if f else None

    def set(self, name: str, value: Any, score: float, *reasons: str) -> None:
        self.fields[name] = FieldValue(value, score, list(reasons))

    def make_storable(self) -> None:
        """Every text the document gave, as the database can hold it (``storable``): a NUL
        in a JSON string or a quoted-printable e-mail, or a lone surrogate, failed the save
        with an internal error instead of the order being read."""
        for f in self.fields.values():
            if isinstance(f.value, str):
                f.value = storable(f.value)
            f.reasons = [storable(r) for r in f.reasons]
        for line in self.lines:
            for key in LINE_FIELDS:
                value = getattr(line, key)
                if isinstance(value, str):
                    setattr(line, key, storable(value))
            line.reasons = [storable(r) for r in line.reasons]
        self.warnings = [storable(w) for w in self.warnings]
        self.template = storable(self.template)

    @property
    def arithmetic_ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    # JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "source_format": self.source_format,
            "template": self.template,
            "confidence": self.confidence,
            "checks": self.checks,
            "warnings": self.warnings,
            "fields": {
                k: {"value": _dump(v.value), "score": v.score, "reasons": v.reasons}
                for k, v in self.fields.items()
            },
            "lines": [{k: _dump(v) for k, v in asdict(line).items()} for line in self.lines],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParsedOrder:
        order = cls(
            source_format=data.get("source_format", ""),
            template=data.get("template", ""),
            confidence=float(data.get("confidence") or 0),
            checks=list(data.get("checks", [])),
            warnings=list(data.get("warnings", [])),
        )
        for name, f in data.get("fields", {}).items():
            order.fields[name] = FieldValue(
                load_field(name, f.get("value")), float(f.get("score", 0)), list(f["reasons"])
            )
        for raw in data.get("lines", []):
            line = ParsedLine(line_number=int(raw["line_number"]))
            for key in LINE_FIELDS:
                value = raw.get(key)
                if key in ("quantity", "unit_cost", "line_total"):
                    value = Decimal(value) if value not in (None, "") else None
                setattr(line, key, value if value is not None else getattr(line, key))
            line.confidence = float(raw.get("confidence", 1.0))
            line.reasons = list(raw.get("reasons", []))
            order.lines.append(line)
        return order


def _dump(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def load_field(name: str, value: Any) -> Any:
    if value in (None, ""):
        return None
    if name in MONEY_FIELDS:
        return Decimal(str(value))
    if name in DATE_FIELDS:
        return dt.date.fromisoformat(str(value))
    return value
