"""ASGI routes served by the realtime core (everything else goes to Django)."""

from __future__ import annotations

from django.urls import path, re_path

from . import consumers, websocket
from .access import SessionUserMiddleware

UUID = r"[0-9a-fA-F-]{36}"
TOPIC = r"[a-z][a-z0-9_]{0,31}:[0-9A-Za-z-]{1,64}"  # realtime.topics: PREFIX_RE, IDENT_RE

# Only the stream routes pay for the session lookup.
http_patterns = [
    re_path(
        rf"^api/v1/jobs/(?P<job_id>{UUID})/events$",
        SessionUserMiddleware(consumers.JobEventsSSE()),
    ),
    re_path(
        rf"^api/v1/realtime/topics/(?P<topic>{TOPIC})/events$",
        SessionUserMiddleware(consumers.TopicEventsSSE()),
    ),
    path("api/v1/products/import/stream", SessionUserMiddleware(consumers.StatusSSE())),
    path("api/v1/realtime/events", SessionUserMiddleware(consumers.ActivitySSE())),
]

websocket_patterns = [
    path("ws/v1/stream/", websocket.StreamConsumer.as_asgi()),
]
