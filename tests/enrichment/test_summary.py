"""A BOM's summary (the run's ``enrichment.completed`` and ``GET /api/v1/boms/{id}``)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from enrichment.jobs import bom_summary
from enrichment.models import Bom, BomLine

pytestmark = pytest.mark.django_db


def _line(bom, n, status, *, currency="USD", price=None, dnp=False, warnings=()):
    return BomLine(
        bom=bom,
        line_number=n,
        match_status=status,
        currency=currency,
        extended_price=None if price is None else Decimal(price),
        dnp=dnp,
        warnings=list(warnings),
    )


def test_counts_costs_by_currency_and_warnings_in_one_pass(org):
    bom = Bom.objects.create(organization=org, name="summary")
    BomLine.objects.bulk_create(
        [
            _line(bom, 2, "matched", price="10.50"),
            _line(bom, 3, "matched", price="0.25", warnings=["Stock 1 is short of the 5 needed."]),
            _line(bom, 4, "matched", price="99", dnp=True),  # not populated: not bought
            _line(bom, 5, "matched"),  # no price known
            _line(bom, 6, "ambiguous", price="7"),  # not decided: not in the cost
            _line(bom, 7, "not_found", currency=""),
            _line(bom, 8, "skipped", currency="", dnp=True),
        ]
    )
    summary = bom_summary(bom)
    assert summary["counts"] == {
        "matched": 4,
        "ambiguous": 1,
        "not_found": 1,
        "skipped": 1,
        "error": 0,
        "pending": 0,
    }
    assert (summary["total_cost"], summary["currency"]) == ("10.75", "USD")
    assert summary["total_cost_by_currency"] == {"USD": "10.75"}
    assert summary["lines_with_warnings"] == 1

    BomLine.objects.bulk_create([_line(bom, 9, "matched", currency="EUR", price="3")])
    summary = bom_summary(bom)
    # two currencies: no single total, each its own
    assert (summary["total_cost"], summary["currency"]) == (None, None)
    assert summary["total_cost_by_currency"] == {"USD": "10.75", "EUR": "3.00"}
    assert summary["counts"]["matched"] == 5
