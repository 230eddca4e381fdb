"""``publish()``: the one way anything announces a change to clients.

Events are plain JSON-able dicts sent after the surrounding transaction commits, so a rolled-back
change never reaches a client. Each is appended to its topic's Redis Stream (the log that clients
replay from), then published to the Channels layer group for live fan-out. Workers publish with
one long-lived sync Redis connection; no event loop, no ``async_to_sync``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from . import events
from .log import STREAM_FIELD, maxlen_for, stream_key
from .metrics import metrics
from .redis import client

log = logging.getLogger(__name__)


@functools.cache
def _layer_wire() -> tuple[str, Any]:
    """The group-channel prefix and serializer of the configured Pub/Sub channel layer."""
    from channels_redis.serializers import registry

    conf = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    return conf.get("prefix", "asgi"), registry.get_serializer("msgpack")


def warm_up() -> None:
    """Do now what a process's first publish would otherwise do while its clients wait: load
    the layer's serializer and redis-py's connection code, and connect. A worker calls this
    once before it forks work horses; they inherit all of it but the connection (redis-py
    opens a new one in a child), so a job's first events are not a few milliseconds late."""
    _layer_wire()
    try:
        client().ping()
    except redis.RedisError:  # not reachable yet: the first publish connects, as before
        log.warning("realtime: Redis did not answer the warm-up ping", exc_info=True)


@dataclass(frozen=True)
class Event:
    """One event for ``publish_together``: its type, topics and body."""

    type: str
    topics: list[str]
    body: dict[str, Any]
    terminal: bool = False


def fanout_message(env: dict[str, Any], *, sent_at: float | None) -> dict[str, Any]:
    """The Channels-layer message that carries ``env`` to every daphne process's hub (and that a
    hub rebuilds from the log when it replays what it missed)."""
    return {
        "type": "realtime.event",
        "topic": env["topic"],
        "id": env["id"],
        "event_type": env["type"],
        "sent_at": sent_at,
        "json": events.dumps(env),
        "job_id": str((env.get("job") or {}).get("id") or "") or None,
    }


def publish(
    event_type: str,
    *,
    topics: Iterable[str],
    body: dict[str, Any],
    terminal: bool = False,
) -> None:
    """Publish one event to each of ``topics`` once the current transaction commits."""
    publish_together([Event(event_type, list(topics), body, terminal)])


def publish_together(batch: Sequence[Event]) -> None:
    """Publish several events, in order, once the current transaction commits, in one Redis
    round trip each for the log and the fan-out.

    Events published back to back (a job's start and its first stage) then reach daphne in
    one read, and its hub hands them to each client in one write: one pass over a thousand
    connections instead of two, where the second event waited for the whole first pass.
    """
    ts = events.now_iso()
    sent_at = time.time()
    batch = list(batch)
    transaction.on_commit(lambda: _publish_now(batch, ts=ts, sent_at=sent_at))


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
    return _publish_now([Event(event_type, topics, body, terminal)], ts=ts, sent_at=sent_at)


def _publish_now(
    batch: list[Event], *, ts: str | None = None, sent_at: float | None = None
) -> list[dict[str, Any]]:
    ts = ts or events.now_iso()
    r = client()
    pipe = r.pipeline(transaction=False)
    for event in batch:
        stored = events.dumps({"type": event.type, "ts": ts, **event.body})
        for topic in event.topics:
            pipe.xadd(
                stream_key(topic),
                {STREAM_FIELD: stored},
                maxlen=maxlen_for(topic),
                approximate=True,
            )
    ids = iter([i.decode() for i in pipe.execute()])

    prefix, serializer = _layer_wire()
    ttl = settings.REALTIME["JOB_LOG_TTL_SECONDS"]
    pipe = r.pipeline(transaction=False)
    out = []
    for event in batch:
        body = event.body
        for topic in event.topics:
            event_id = next(ids)
            env = events.envelope(event_id, event.type, topic, ts, body)
            out.append(env)
            message = fanout_message(env, sent_at=sent_at or time.time())
            group = f"{prefix}__group__{events.group_name(topic)}"
            pipe.publish(group, serializer.serialize(message))
            if event.terminal and not topic.startswith("org:"):
                # job and bom topics live until the job ended plus the TTL
                pipe.expire(stream_key(topic), ttl)
    pipe.execute()
    for event in batch:
        metrics.inc("events_published", event.type, len(event.topics))
    return out
