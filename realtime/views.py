"""The staff page ``/realtime/``: the streams' health at a glance, kept live by polling
``/realtime/data`` (the same figures as JSON) every couple of seconds."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .exposition import overview

CHART_WIDTH = 600
CHART_HEIGHT = 160
HISTORY_SECONDS = 600
POLL_MS = 2000


def _nice_ceiling(value: float, floor: float) -> float:
    """The y-axis top: the smallest 1, 2 or 5 times 10^n at or above ``value`` and ``floor``."""
    value = max(value, floor)
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _path(values: list[float | None], top: float) -> str:
    """An SVG path through ``values`` (one per slot, left to right), broken where a value is
    None (nothing was delivered in that slot)."""
    if not values:
        return ""
    step = CHART_WIDTH / max(len(values) - 1, 1)
    parts = []
    for i, value in enumerate(values):
        if value is None:
            continue
        y = CHART_HEIGHT - min(value, top) / top * CHART_HEIGHT
        joined = i > 0 and values[i - 1] is not None
        parts.append(f"{'L' if joined else 'M'}{i * step:.1f},{y:.1f}")
        if not joined and (i + 1 == len(values) or values[i + 1] is None):
            parts.append("h3")  # a slot on its own: a short dash, not an invisible point
    return " ".join(parts)


def chart(points: list[dict[str, Any]], keys: tuple[str, str], floor: float) -> dict[str, Any]:
    """Two series of ``points`` as SVG path data on a shared y-axis, with its labels."""
    first, second = ([p[k] for p in points] for k in keys)
    top = _nice_ceiling(max([v for v in (*first, *second) if v is not None] or [0]), floor)
    return {
        "top": top,
        "mid": top / 2,
        "paths": [_path(first, top), _path(second, top)],
    }


def ops_data_dict() -> dict[str, Any]:
    data = overview(seconds=HISTORY_SECONDS)
    points = data["series"]
    data["latency_chart"] = chart(points, ("p50_ms", "p99_ms"), floor=10)
    data["rate_chart"] = chart(points, ("delivered_per_s", "published_per_s"), floor=10)
    return data


@staff_member_required
def ops_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "realtime/ops.html",
        {
            "title": "Realtime streams",
            "data": ops_data_dict(),
            "chart_width": CHART_WIDTH,
            "chart_height": CHART_HEIGHT,
            "poll_ms": POLL_MS,
            "history_minutes": HISTORY_SECONDS // 60,
        },
    )


@staff_member_required
def ops_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(ops_data_dict())
