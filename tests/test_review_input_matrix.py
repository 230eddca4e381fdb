"""A purchase order waiting for review, corrected with hostile values: every one a 4xx naming
the problem, the order still waiting; then a sound correction goes on."""

from __future__ import annotations

import pytest

from imports.purchasing.models import PurchaseOrder
from tests.purchasing.documents import KRAEMER_TEXT
from tests.purchasing.test_workflow import post_order

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    {"fields": {"total": "9" * 30}},
    {"fields": {"total": 1e30}},
    {"fields": {"subtotal": "-" + "9" * 20}},
    {"fields": {"tax": [1]}},
    {"fields": {"order_date": {"y": 2026}}},
    {"fields": {"order_date": "9999-99-99"}},
    {"fields": {"currency": ["EUR"]}},
    {"lines": [{"line_number": 1, "quantity": "9" * 30}]},
    {"lines": [{"line_number": 1, "unit_cost": 1e30}]},
    {"lines": [{"line_number": 1, "line_total": "²"}]},
    {"lines": [{"line_number": 1, "sku": {"a": 1}}]},
    {"lines": [{"line_number": True, "sku": "A"}]},
    {"lines": [{"line_number": 1, "sku": "x" * 5000}]},
]


def test_hostile_review_values_are_refused_by_name(api, run_worker):
    resp = post_order(api, KRAEMER_TEXT.encode(), "kraemer.txt")
    order_id = resp.json()["purchase_order"]["id"]
    run_worker()
    assert PurchaseOrder.objects.get(pk=order_id).status == "needs_review"
    url = f"/api/v1/purchase-orders/{order_id}/review"
    outcomes = {}
    for body in HOSTILE:
        body = {**body, "fields": {"supplier": "Kraemer GmbH", **body.get("fields", {})}}
        resp = api.post(url, body, format="json")
        outcomes[repr(body)[:90]] = resp.status_code
        if resp.status_code == 202:
            break  # accepted: the order went on, the rest would be a 409
    bad = {k: v for k, v in outcomes.items() if v >= 500 or v == 202}
    assert not bad, bad
    assert PurchaseOrder.objects.get(pk=order_id).status == "needs_review"
    ok = api.post(url, {"fields": {"supplier": "Kraemer GmbH"}}, format="json")
    assert ok.status_code == 202, ok.content
    run_worker()
    assert PurchaseOrder.objects.get(pk=order_id).status in ("completed", "failed")
