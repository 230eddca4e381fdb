"""The event envelope and topic names shared by SSE, WebSocket and polling."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

TERMINAL_EVENT_TYPES = frozenset(
    {"job.completed", "job.failed", "job.cancelled", "enrichment.completed", "enrichment.failed"}
)
# Coalescable for a slow client: the latest per topic carries all that matters.
COALESCABLE_EVENT_TYPES = frozenset({"job.progress", "enrichment.progress", "status", "heartbeat"})

TOPIC_RE = re.compile(r"^(job|org|bom):[0-9A-Za-z-]{1,64}$")


def job_topic(job_id: object) -> str:
    return f"job:{job_id}"


def org_topic(org_id: object) -> str:
    return f"org:{org_id}"


def bom_topic(bom_id: object) -> str:
    return f"bom:{bom_id}"


def group_name(topic: str) -> str:
    """Channels group names allow only [a-zA-Z0-9_.-]."""
    return "topic." + topic.replace(":", ".")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(
    event_id: str, event_type: str, topic: str, ts: str, body: dict[str, Any]
) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "topic": topic, "ts": ts, **body}


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)
