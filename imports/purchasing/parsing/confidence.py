"""Confidence per field, with its reasons, and the arithmetic checks.

The readers give each field a base score and the reason for it (a labelled cell, a template
match found once, ...). ``assess`` then runs the checks — quantity x unit cost = line total,
lines sum to the subtotal, subtotal + tax = total — adds their outcome to the fields' reasons,
and sets the order's confidence to the lowest of its required fields. A failed check sends the
order to review whatever the scores.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from .document import REQUIRED_FIELDS, ParsedOrder

CENT = Decimal("0.01")
# what the order's columns hold (numeric(16, 2); a line's quantity numeric(14, 3)): a larger
# amount is not read as a number at all, so it goes to review instead of failing the save
MAX_AMOUNT = Decimal("1e14")  # numeric(16, 2)
MAX_UNIT_COST = Decimal("1e12")  # numeric(16, 4)
MAX_QUANTITY = Decimal("1e11")  # numeric(14, 3)
AMOUNT_FIELDS = ("subtotal", "tax", "total")
# a line total may be rounded from a 4-decimal unit cost: allow half a cent per line
LINE_TOLERANCE = Decimal("0.005")


def _close(a: Decimal, b: Decimal, tolerance: Decimal = CENT) -> bool:
    return abs(a - b) <= tolerance


def assess(order: ParsedOrder) -> ParsedOrder:
    """Score ``order`` in place (idempotent: an earlier assessment's check reasons are replaced)."""
    order.checks = []
    for f in order.fields.values():
        f.reasons = [r for r in f.reasons if not r.startswith("check:")]
    # the checks multiply and add what the document says, however large: no overflow here
    with localcontext() as ctx:
        ctx.prec = 80
        _drop_oversized(order)
        _check_lines(order)
        _check_totals(order)
        _drop_oversized(order)
    for name in REQUIRED_FIELDS:
        if order.value(name) in (None, ""):
            order.set(name, None, 0.0, "not found in the document")
    order.confidence = round(min(order.fields[n].score for n in REQUIRED_FIELDS), 3)
    return order


# each amount's column: the bound it stays under and its decimal places
COLUMN_LIMITS = {
    "subtotal": (MAX_AMOUNT, 2),
    "tax": (MAX_AMOUNT, 2),
    "total": (MAX_AMOUNT, 2),
    "quantity": (MAX_QUANTITY, 3),
    "unit_cost": (MAX_UNIT_COST, 4),
    "line_total": (MAX_AMOUNT, 2),
}


def too_large(name: str, value: Decimal) -> bool:
    """Whether ``value`` does not fit the column of ``name`` once rounded to its places
    (99999999999.9999 rounds up to 1e11, which numeric(14, 3) cannot hold). The checks here
    and a review's corrections (``services``) both ask this."""
    limit, places = COLUMN_LIMITS[name]
    return not value.is_finite() or abs(value) >= limit or abs(round(value, places)) >= limit


def _drop_oversized(order: ParsedOrder) -> None:
    """Amounts no column can hold become unread fields (score 0, with the reason)."""
    for name in AMOUNT_FIELDS:
        value = order.value(name)
        if isinstance(value, Decimal) and too_large(name, value):
            order.set(name, None, 0.0, f"{value:.6g} is too large for an amount")
    for line in order.lines:
        for attr in ("quantity", "unit_cost", "line_total"):
            value = getattr(line, attr)
            if value is not None and too_large(attr, value):
                setattr(line, attr, None)
                line.confidence = min(line.confidence, 0.0)
                why = f"{attr.replace('_', ' ')} {value:.6g} is too large"
                line.reasons.append(why)
                # a failed check sends the order to review: the totals were computed or
                # checked without this line's value
                order.checks.append(
                    {
                        "check": "too_large",
                        "ok": False,
                        "message": f"line {line.line_number}: {why}",
                    }
                )


def _check_lines(order: ParsedOrder) -> None:
    bad = 0
    for line in order.lines:
        line.reasons = [r for r in line.reasons if not r.startswith("check:")]
        q, u, t = line.quantity, line.unit_cost, line.line_total
        if q is None or u is None:
            line.confidence = min(line.confidence, 0.4)
            line.reasons.append("check: quantity or unit cost missing")
            continue
        if t is None:
            line.line_total = (q * u).quantize(CENT)
            line.confidence = min(line.confidence, 0.9)
            line.reasons.append("check: line total computed as quantity x unit cost")
            continue
        if _close(q * u, t, CENT + LINE_TOLERANCE):
            line.reasons.append("check: quantity x unit cost = line total")
        else:
            bad += 1
            line.confidence = min(line.confidence, 0.5)
            line.reasons.append(f"check: {q} x {u} = {(q * u).quantize(CENT)}, not {t}")
    if bad:
        order.checks.append(
            {
                "check": "line_totals",
                "ok": False,
                "message": f"{bad} line(s) where quantity x unit cost ≠ line total",
            }
        )
    else:
        order.checks.append({"check": "line_totals", "ok": True, "message": "every line adds up"})


def _check_totals(order: ParsedOrder) -> None:
    lines_sum = sum((ln.line_total or Decimal(0) for ln in order.lines), Decimal(0))
    subtotal, tax, total = order.value("subtotal"), order.value("tax"), order.value("total")
    if subtotal is None:
        order.set(
            "subtotal", lines_sum.quantize(CENT), 0.9, "computed as the sum of the line totals"
        )
        subtotal = lines_sum
    elif _close(lines_sum, subtotal):
        order.fields["subtotal"].reasons.append("check: lines sum to the subtotal")
        order.checks.append(
            {"check": "lines_sum_subtotal", "ok": True, "message": "lines sum to the subtotal"}
        )
    else:
        order.fields["subtotal"].score = min(order.fields["subtotal"].score, 0.5)
        message = f"lines sum to {lines_sum.quantize(CENT)}, the subtotal says {subtotal}"
        order.fields["subtotal"].reasons.append("check: " + message)
        order.checks.append({"check": "lines_sum_subtotal", "ok": False, "message": message})
    if total is None:
        if tax is not None or subtotal is not None:
            order.set(
                "total",
                (subtotal + (tax or Decimal(0))).quantize(CENT),
                0.7,
                "computed as subtotal + tax (no total in the document)",
            )
        return
    if tax is None:
        if _close(subtotal, total):
            order.fields["total"].reasons.append("check: total = subtotal (no tax)")
            return
        order.set("tax", (total - subtotal).quantize(CENT), 0.8, "computed as total - subtotal")
        return
    if _close(subtotal + tax, total):
        order.fields["total"].reasons.append("check: subtotal + tax = total")
        order.checks.append(
            {"check": "subtotal_tax_total", "ok": True, "message": "subtotal + tax = total"}
        )
    else:
        order.fields["total"].score = min(order.fields["total"].score, 0.5)
        message = f"subtotal {subtotal} + tax {tax} = {subtotal + tax}, the total says {total}"
        order.fields["total"].reasons.append("check: " + message)
        order.checks.append({"check": "subtotal_tax_total", "ok": False, "message": message})


def review_reasons(order: ParsedOrder, min_confidence: float) -> list[str]:
    """Why ``order`` must wait for a person (empty: it may go on by itself)."""
    reasons = [c["message"] for c in order.checks if not c["ok"]]
    for name in REQUIRED_FIELDS:
        f = order.fields[name]
        if f.score < min_confidence:
            why = "; ".join(r for r in f.reasons if not r.startswith("check:")) or "low score"
            reasons.append(f"{name.replace('_', ' ')}: confidence {f.score:.2f} ({why})")
    return reasons
