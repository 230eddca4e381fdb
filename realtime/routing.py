"""ASGI routes served by the realtime core (everything else goes to Django)."""

from __future__ import annotations

from django.urls import path, re_path

from . import consumers
from .access import SessionUserMiddleware

UUID = r"[0-9a-fA-F-]{36}"

# Only the stream routes pay for the session lookup.
http_patterns = [
    re_path(
        rf"^api/v1/jobs/(?P<job_id>{UUID})/events$",
        SessionUserMiddleware(consumers.JobEventsSSE()),
    ),
    path("api/v1/products/import/stream", SessionUserMiddleware(consumers.StatusSSE())),
    path("api/v1/realtime/events", SessionUserMiddleware(consumers.ActivitySSE())),
]

websocket_patterns = [
    path("ws/v1/stream/", consumers.StreamConsumer.as_asgi()),
]
