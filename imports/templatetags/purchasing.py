"""Formatting for the purchase-order pages; static/js/purchasing.js formats live updates alike."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

register = template.Library()

PO_STATUS_LABELS = {
    "processing": "Processing",
    "needs_review": "Needs review",
    "completed": "Completed",
    "failed": "Failed",
}
STAGE_LABELS = {
    "parsing": "Parsing",
    "database_save": "Saving",
    "product_drafts": "Product drafts",
    "image_attachment": "Images",
    "sync": "Store sync",
    "status_update": "Status",
    "needs_review": "Review",
}


@register.filter
def po_status_label(status: str) -> str:
    return PO_STATUS_LABELS.get(status, status)


@register.filter
def score(value: float | Decimal | None) -> str:
    if value in (None, ""):
        return "—"
    return f"{float(value):.2f}"


@register.filter
def money(value: Decimal | None, currency: str = "") -> str:
    if value in (None, ""):
        return "—"
    text = f"{Decimal(value):,.2f}"
    return f"{text} {currency}".strip()


@register.filter
def qty(value: Decimal | None) -> str:
    if value in (None, ""):
        return "—"
    d = Decimal(value)
    return f"{d:,.0f}" if d == d.to_integral_value() else f"{d.normalize():,f}"


@register.filter
def stage_label(name: str) -> str:
    return STAGE_LABELS.get(name, name)


@register.filter
def workflow_text(event: dict[str, Any]) -> str:
    """One activity-feed line for a purchase-order event (as purchasing.js writes it)."""
    job = event.get("job") or {}
    name = job.get("original_filename") or str(job.get("id", ""))[:8]
    kind = event.get("type", "")
    stage = STAGE_LABELS.get(event.get("stage", ""), event.get("stage", ""))
    if kind == "workflow.stage":
        message = event.get("message") or event.get("status", "")
        return f"{name}: {stage} — {message}"
    if kind == "workflow.completion":
        return f"{name}: done — {event.get('lineItems', 0):,} lines"
    if kind == "workflow.error":
        return f"{name}: {stage} failed — {event.get('error', '')}"
    if kind == "job.failed":
        return f"{name}: failed — {job.get('error_message', '')}"
    return f"{name}: {kind.split('.')[-1]}"


@register.filter
def workflow_class(event: dict[str, Any]) -> str:
    kind = event.get("type", "")
    if kind == "workflow.error" or kind == "job.failed":
        return "act-failed"
    if kind == "workflow.completion" or kind == "job.completed":
        return "act-completed"
    if event.get("status") == "waiting":
        return "act-queued"
    return "act-stage"
