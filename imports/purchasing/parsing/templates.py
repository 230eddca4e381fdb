"""Templates in the spirit of invoice2data: keywords pick one, regexes extract the fields.

A template is data (``ParsingTemplate`` rows, editable per organization in the admin); this
module is the pure part: ``Template`` (a plain dataclass), ``choose()`` and ``extract()``.
``GENERIC`` is the fallback for a supplier with no template of its own; what it finds scores
lower, so an order read only by it usually waits for review.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from .document import ParsedLine, ParsedOrder
from .numbers import parse_currency, parse_date, parse_decimal

FIELD_NAMES = (
    "po_number",
    "supplier",
    "order_date",
    "expected_date",
    "currency",
    "subtotal",
    "tax",
    "total",
)
LINE_GROUPS = ("sku", "supplier_sku", "description", "quantity", "unit_cost", "line_total")
# a template's own find scores 1.0; the generic fallback's at most this
GENERIC_SCORE = 0.75
# a supplier template matched, but this field is read by the generic pattern
MATCHED_GENERIC_SCORE = 0.85
_NUM = r"-?[\d][\d.,' ]*"
# where the line table ends
_TOTALS = re.compile(
    r"(?i)^[ \t]*(?:sub[ \t]*total|net[ \t]+total|grand[ \t]+total|total|tax|vat)\b"
)


@dataclass
class Template:
    name: str
    keywords: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    line_pattern: str = ""
    decimal_separator: str = "auto"
    date_formats: list[str] = field(default_factory=list)
    supplier: str = ""  # the supplier a matching template names, if the document does not
    currency: str = ""
    priority: int = 0
    generic: bool = False

    def matches(self, text: str) -> bool:
        lowered = text.lower()
        return bool(self.keywords) and all(k.lower() in lowered for k in self.keywords)


def compile_errors(fields: dict[str, str], line_pattern: str) -> list[str]:
    """What is wrong with a template's patterns (for the admin form)."""
    errors = []
    for name, pattern in fields.items():
        if name not in FIELD_NAMES:
            errors.append(f"'{name}' is not a field (use {', '.join(FIELD_NAMES)})")
            continue
        try:
            if re.compile(pattern).groups < 1:
                errors.append(f"{name}: the pattern needs one group around the value")
        except re.error as exc:
            errors.append(f"{name}: {exc}")
    if line_pattern:
        try:
            groups = set(re.compile(line_pattern).groupindex)
        except re.error as exc:
            errors.append(f"line pattern: {exc}")
        else:
            if not ({"sku", "supplier_sku"} & groups) or "quantity" not in groups:
                errors.append("line pattern: needs named groups (?P<sku>…) and (?P<quantity>…)")
    return errors


_SP = r"[ \t]*"
# a labelled value to the end of its line, without the spaces around it. Not ``(.+?)[ \t]*$``:
# that tried the trailing-space run at every character, so a line with a long run of spaces
# took time in its square (20,000 characters: seconds; a 20 MB file: days). Ending on a
# non-space, each character is tried once; ``\r`` of a CRLF text is left out alike.
_VALUE = r"(\S(?:[^\n]*\S)?)[ \t\r]*$"
_AMOUNT = rf"{_SP}:?{_SP}[A-Z$€£]*{_SP}({_NUM})"
GENERIC = Template(
    name="generic",
    generic=True,
    fields={
        "po_number": (
            rf"(?im)^{_SP}(?:P\.?O\.?|purchase[ \t]+order){_SP}(?:number|no\.?|n[or]\.?|#)?"
            rf"{_SP}[:#]?{_SP}([A-Z0-9][A-Z0-9/_.-]*\d[A-Z0-9/_.-]*)"
        ),
        "supplier": rf"(?im)^{_SP}(?:supplier|vendor|from|seller){_SP}:{_SP}{_VALUE}",
        "order_date": rf"(?im)^{_SP}(?:order[ \t]+|po[ \t]+)?date{_SP}:{_SP}{_VALUE}",
        "expected_date": (
            rf"(?im)^{_SP}(?:expected|delivery|due)(?:[ \t]+date)?{_SP}:{_SP}{_VALUE}"
        ),
        "currency": rf"(?im)^{_SP}currency{_SP}:{_SP}([A-Z]{{3}}|[$€£])",
        "subtotal": rf"(?im)^{_SP}(?:sub{_SP}total|net[ \t]+total){_AMOUNT}",
        "tax": rf"(?im)^{_SP}(?:tax|vat|sales[ \t]+tax)(?:{_SP}\(?[\d.,]+{_SP}%\)?)?{_AMOUNT}",
        "total": rf"(?im)^{_SP}(?:grand[ \t]+)?total(?:[ \t]+amount|[ \t]+due)?{_AMOUNT}",
    },
    line_pattern=(
        # the description ends on a non-space and the spaces after it are taken whole (``++``):
        # ``.+?[ \t]+`` scanned a long run of spaces again from each of its characters
        r"^[ \t]*(?:\d{1,4}[ \t.)]+)?(?P<sku>[A-Z0-9][A-Z0-9_./-]{1,40})[ \t]++"
        r"(?P<description>\S(?:[^\n]*?\S)?)"
        r"[ \t]++(?P<quantity>\d+(?:[.,]\d+)?)[ \t]+(?:x[ \t]+)?[$€£]?(?P<unit_cost>\d[\d.,']*)"
        r"[ \t]+[$€£]?(?P<line_total>\d[\d.,']*)[ \t]*$"
    ),
)


def choose(text: str, templates: list[Template]) -> Template:
    """The matching template with the highest priority (the most keywords on a tie), else
    the generic one."""
    matching = [t for t in templates if t.matches(text)]
    if not matching:
        return GENERIC
    return max(matching, key=lambda t: (t.priority, len(t.keywords)))


def extract(text: str, template: Template, source_format: str) -> ParsedOrder:
    order = ParsedOrder(source_format=source_format, template=template.name)
    base = GENERIC_SCORE if template.generic else 1.0
    why = (
        "generic template (no supplier template matched)"
        if template.generic
        else f"template '{template.name}' matched"
    )
    patterns = {**(GENERIC.fields if not template.generic else {}), **template.fields}
    for name in FIELD_NAMES:
        pattern = patterns.get(name)
        if not pattern:
            continue
        own = name in template.fields
        found = [m.group(1).strip() for m in re.finditer(pattern, text)]
        if not found:
            continue
        distinct = list(dict.fromkeys(found))
        score = base if own else MATCHED_GENERIC_SCORE
        reasons = [why] if own else [why, "field read by the generic pattern"]
        if len(distinct) == 1:
            once = len(found) == 1
            reasons.append("found exactly once" if once else "found, same value each time")
        else:
            score = min(score, 0.5)
            reasons.append(f"found {len(distinct)} different values: {', '.join(distinct[:3])}")
        value = _convert(name, distinct[0], template)
        if value is None:
            order.set(name, None, 0.0, f"'{distinct[0]}' could not be read as {name}")
            continue
        order.set(name, value, score, *reasons)
    if order.value("supplier") is None and template.supplier:
        order.set("supplier", template.supplier, base, why, "supplier named by the template")
    if order.value("currency") is None and template.currency:
        order.set("currency", template.currency, base, why, "currency named by the template")
    _lines(order, text, template, base)
    return order


def _convert(name: str, raw: str, template: Template) -> object:
    if name in ("subtotal", "tax", "total"):
        return parse_decimal(raw, template.decimal_separator)
    if name in ("order_date", "expected_date"):
        return parse_date(raw, template.date_formats)
    if name == "currency":
        return parse_currency(raw)
    return raw


def _lines(order: ParsedOrder, text: str, template: Template, base: float) -> None:
    pattern = re.compile(template.line_pattern or GENERIC.line_pattern, re.IGNORECASE)
    sep = template.decimal_separator
    stop = _TOTALS
    previous: ParsedLine | None = None
    for raw_line in text.splitlines():
        m = pattern.match(raw_line)
        if not m:
            # a description that wraps onto the next line (invoice2data #12, #276): indented
            # text right after a line, before the totals
            if previous is not None and raw_line.strip() and raw_line[:1] in " \t":
                if stop.match(raw_line) or not raw_line.strip()[0].isalpha():
                    previous = None
                    continue
                previous.description = f"{previous.description} {raw_line.strip()}".strip()
                previous.reasons.append("description continued on the next line")
                continue
            previous = None
            continue
        groups = {k: (v or "").strip() for k, v in m.groupdict().items()}
        line = ParsedLine(line_number=len(order.lines) + 1)
        line.sku = groups.get("sku", "")[:64]
        line.supplier_sku = groups.get("supplier_sku", "")[:64]
        line.description = groups.get("description", "")
        line.image_url = groups.get("image_url", "")
        line.confidence = base
        line.reasons.append(
            "generic line pattern"
            if template.generic or not template.line_pattern
            else f"line pattern of template '{template.name}'"
        )
        for key in ("quantity", "unit_cost", "line_total"):
            if groups.get(key):
                value = parse_decimal(groups[key], sep)
                if value is None:
                    line.confidence = min(line.confidence, 0.3)
                    line.reasons.append(f"{key.replace('_', ' ')} '{groups[key]}' is not a number")
                setattr(line, key, value)
        order.add_line(line)
        previous = line


def total_of(lines: list[ParsedLine]) -> Decimal:
    return sum((ln.line_total or Decimal(0) for ln in lines), Decimal(0))
