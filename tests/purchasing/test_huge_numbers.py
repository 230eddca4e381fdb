"""Amounts no column can hold go to review; they never fail the parsing stage."""

from __future__ import annotations

from decimal import Decimal

from imports.purchasing.parsing.confidence import assess, review_reasons
from imports.purchasing.parsing.document import ParsedLine, ParsedOrder


def _order(quantity, unit_cost, total=None):
    order = ParsedOrder(source_format="csv")
    order.set("po_number", "PO-1", 1.0, "labelled")
    order.set("supplier", "Acme", 1.0, "labelled")
    if total is not None:
        order.set("total", total, 1.0, "labelled")
    order.lines = [
        ParsedLine(line_number=1, sku="A", quantity=quantity, unit_cost=unit_cost),
        ParsedLine(line_number=2, sku="B", quantity=Decimal(2), unit_cost=Decimal("1.50")),
    ]
    return order


def test_a_thirty_digit_quantity_is_unread_not_an_internal_error():
    order = assess(_order(Decimal("1" * 30), Decimal("2.50")))
    line = order.lines[0]
    assert line.quantity is None and line.line_total is None
    assert any("too large" in r for r in line.reasons)
    assert order.lines[1].line_total == Decimal("3.00")


def test_thirteen_digit_values_multiplied_do_not_overflow_and_the_total_goes_to_review():
    order = assess(_order(Decimal("9" * 10), Decimal("9" * 13), total=Decimal("1" * 20)))
    # a 13-digit unit cost is more than numeric(16, 4) holds: unread, as the 20-digit total
    assert order.lines[0].unit_cost is None
    assert order.fields["total"].score < 0.8  # computed from the other line, not labelled
    reasons = review_reasons(order, 0.8)
    assert "line 1: unit cost 1.00000e+13 is too large" in reasons
    assert any(r.startswith("total: confidence") for r in reasons)
