"""Formatting shared by the pages; static/js/live.js formats live updates the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from imports.models import JobStatus

register = template.Library()

STATUS_LABELS = dict(JobStatus.choices)


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


@register.filter
def num(value: int | None) -> str:
    return f"{value or 0:,}"


@register.filter
def rows_of(job: dict[str, Any]) -> str:
    total = job.get("total_rows")
    done = f"{job.get('processed_rows') or 0:,}"
    return f"{done} / {total:,}" if total is not None else f"{done} / ?"


@register.filter
def rate(value: float | None) -> str:
    return f"{round(value):,} rows/s" if value else ""


@register.filter
def seconds_left(value: float | None) -> str:
    # a missing template variable arrives as ""
    return f"{duration(value)} left" if value not in (None, "") else ""


@register.filter
def duration(value: float | None) -> str:
    if value in (None, ""):
        return "—"
    s = round(float(value))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


@register.filter
def clock(iso: str | None) -> str:
    """HH:MM:SS of an ISO timestamp (UTC on the server; the browser shows local time)."""
    if not iso:
        return ""
    return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).strftime("%H:%M:%S")


@register.filter
def activity_text(event: dict[str, Any]) -> str:
    job = event.get("job") or {}
    name = job.get("original_filename") or str(job.get("id", ""))[:8]
    kind = event.get("type", "")
    if kind == "job.stage":
        return f"{name}: {job.get('stage', '')}"
    if kind == "job.completed":
        return (
            f"{name}: completed — {job.get('processed_rows', 0):,} rows, "
            f"{job.get('error_count', 0):,} errors"
        )
    if kind == "job.failed":
        return f"{name}: failed — {job.get('error_message', '')}"
    return f"{name}: {kind.removeprefix('job.')}"


@register.filter
def activity_class(event_type: str) -> str:
    return "act-" + event_type.removeprefix("job.")


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    """``mapping[key]`` in a template (a preview row's field, a preset's label)."""
    return (mapping or {}).get(key, "")


@register.filter
def get_item_at(items: list[Any] | None, index: int) -> Any:
    items = items or []
    return items[index] if 0 <= index < len(items) else ""
