"""``publish()``: the one way anything announces a change to clients.

Events are plain JSON-able dicts sent after the surrounding transaction commits, so a rolled-back
change never reaches a client. Each is appended to its topic's Redis Stream (the log that clients
replay from), then published to the Channels layer group for live fan-out. Workers publish with
one long-lived sync Redis connection; no event loop, no ``async_to_sync``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import transaction

from . import events
from .log import STREAM_FIELD, maxlen_for, stream_key
from .metrics import metrics
from .redis import client


@functools.cache
def _layer_wire() -> tuple[str, Any]:
    """The group-channel prefix and serializer of the configured Pub/Sub channel layer."""
    from channels_redis.serializers import registry

    conf = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    return conf.get("prefix", "asgi"), registry.get_serializer("msgpack")


def publish(
    event_type: str,
    *,
    topics: Iterable[str],
    body: dict[str, Any],
    terminal: bool = False,
) -> None:
    """Publish one event to each of ``topics`` once the current transaction commits."""
    topics = list(topics)
    ts = events.now_iso()
    sent_at = time.time()
    transaction.on_commit(
        lambda: publish_now(
            event_type, topics=topics, body=body, ts=ts, sent_at=sent_at, terminal=terminal
        )
    )


def publish_now(
    event_type: str,
    *,
    topics: list[str],
    body: dict[str, Any],
    ts: str | None = None,
    sent_at: float | None = None,
    terminal: bool = False,
) -> list[dict[str, Any]]:
    """Append to the log, then fan out. Returns the envelopes as clients will see them."""
    ts = ts or events.now_iso()
    stored = events.dumps({"type": event_type, "ts": ts, **body})
    r = client()
    pipe = r.pipeline(transaction=False)
    for topic in topics:
        pipe.xadd(
            stream_key(topic), {STREAM_FIELD: stored}, maxlen=maxlen_for(topic), approximate=True
        )
    ids = [i.decode() for i in pipe.execute()]

    prefix, serializer = _layer_wire()
    ttl = settings.REALTIME["JOB_LOG_TTL_SECONDS"]
    pipe = r.pipeline(transaction=False)
    out = []
    for topic, event_id in zip(topics, ids, strict=True):
        env = events.envelope(event_id, event_type, topic, ts, body)
        out.append(env)
        message = {
            "type": "realtime.event",
            "topic": topic,
            "id": event_id,
            "event_type": event_type,
            "sent_at": sent_at or time.time(),
            "json": events.dumps(env),
            "job_id": str((body.get("job") or {}).get("id") or "") or None,
        }
        pipe.publish(f"{prefix}__group__{events.group_name(topic)}", serializer.serialize(message))
        if terminal and not topic.startswith("org:"):
            # job and bom topics live until the job ended plus the TTL
            pipe.expire(stream_key(topic), ttl)
    pipe.execute()
    metrics.inc("events_published", event_type, len(topics))
    return out
