"""ASGI routes of BOM enrichment, served by the realtime core's stream endpoints."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from realtime.access import SessionUserMiddleware
from realtime.consumers import TopicEventsSSE
from realtime.events import bom_topic


class BomEventsSSE(TopicEventsSSE):
    """``GET /api/v1/enrichment/stream/{bom_id}``: the stream of ``bom:<id>`` (the current state
    first, then its runs' ``enrichment.*`` events; closes after the terminal one)."""

    not_found = "No such BOM."

    def topic(self, scope: dict[str, Any]) -> str:
        return bom_topic(int(scope["url_route"]["kwargs"]["bom_id"]))  # /stream/012 is BOM 12


http_patterns = [
    re_path(
        r"^api/v1/enrichment/stream/(?P<bom_id>[0-9]{1,18})$",
        SessionUserMiddleware(BomEventsSSE()),
    ),
]
