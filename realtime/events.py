"""The event envelope and topic names shared by SSE, WebSocket and polling.

Which topics exist, and which event types end a stream, is up to the apps that register topic
kinds (``realtime.topics``); this module only knows the shapes every event shares.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

# Coalescable for a client whose socket is backed up: the newest per topic carries all that
# matters. By name, for every app alike: ``<anything>.progress``, the summary and heartbeats.
COALESCABLE_SUFFIX = ".progress"
ALWAYS_COALESCABLE = frozenset({"status", "heartbeat"})


def coalescable(event_type: str) -> bool:
    return event_type in ALWAYS_COALESCABLE or event_type.endswith(COALESCABLE_SUFFIX)


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
