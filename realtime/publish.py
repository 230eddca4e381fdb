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
        client().script_load(PUBLISH_SCRIPT)  # cached in Redis: a horse's first call runs it
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
    batch = list(batch)
    # Stamped when they are published, at the commit: until then the change they announce is
    # not visible to anyone, and may never be. The commit itself (its WAL flush, up to a few
    # hundred ms on a busy disk, after a batch of thousands of rows) is the database's
    # durability, not the stream's delivery: a ``ts`` taken before it made the stream look that
    # much slower, and the publish-to-send latency (metrics, the staff page) measure from here.
    transaction.on_commit(lambda: _publish_or_log(batch))


def _publish_or_log(batch: list[Event]) -> None:
    """Publishing never fails the change it announces: the database row is the truth, and a
    client that missed the event is right again with the next one, or with the snapshot it
    gets when it reconnects. So a Redis outage is logged and counted, not raised."""
    try:
        _publish_now(batch)  # stamped now (``ts``, ``sent_at``)
    except redis.RedisError as exc:
        log.warning("realtime: %d event(s) not published, Redis failed: %s", len(batch), exc)
        for event in batch:
            metrics.inc("events_publish_failed", event.type)


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


# Append each event to its topic's log and publish it to its group in one atomic step. Two
# round trips (all XADDs, then all PUBLISHes) let concurrent publishers on one topic (four
# imports on the organization feed) publish in another order than the log's: a live client
# that got id 101 first then dropped 100 as already seen. 26 % of the stage events were lost
# that way with 4 threads publishing to one topic. In a script, nothing runs in between, so
# the live order is the log's order. The message is what channels-redis' msgpack serializer
# makes of the dict (no prefix, no encryption: realtime.publish._layer_wire).
PUBLISH_SCRIPT = """
local ttl = ARGV[1]
local sent_at = tonumber(ARGV[2])
local ids = {}
for i = 1, #KEYS / 2 do
  local a = 2 + (i - 1) * 7
  local id = redis.call('XADD', KEYS[2 * i - 1], 'MAXLEN', '~', ARGV[a + 1], '*',
                        '@FIELD@', ARGV[a + 2])
  local message = {type = 'realtime.event', topic = ARGV[a + 3], id = id,
                   event_type = ARGV[a + 4], sent_at = sent_at,
                   json = '{"id":"' .. id .. '",' .. string.sub(ARGV[a + 5], 2)}
  if ARGV[a + 6] ~= '' then message.job_id = ARGV[a + 6] end
  redis.call('PUBLISH', KEYS[2 * i], cmsgpack.pack(message))
  if ARGV[a + 7] == '1' then redis.call('EXPIRE', KEYS[2 * i - 1], ttl) end
  ids[i] = id
end
return ids
""".replace("@FIELD@", STREAM_FIELD.decode())


@functools.cache
def _publish_script() -> Any:
    return client().register_script(PUBLISH_SCRIPT)


def _publish_now(
    batch: list[Event], *, ts: str | None = None, sent_at: float | None = None
) -> list[dict[str, Any]]:
    ts = ts or events.now_iso()
    prefix, _ = _layer_wire()
    keys: list[str] = []
    args: list[Any] = [settings.REALTIME["JOB_LOG_TTL_SECONDS"], repr(sent_at or time.time())]
    for event in batch:
        body = event.body
        stored = events.dumps({"type": event.type, "ts": ts, **body})
        job_id = str((body.get("job") or {}).get("id") or "")
        for topic in event.topics:
            keys += [stream_key(topic), f"{prefix}__group__{events.group_name(topic)}"]
            # the envelope as clients get it, less its id (the script puts the id first)
            rest = events.dumps({"type": event.type, "topic": topic, "ts": ts, **body})
            # job and bom topics live until the job ended plus the TTL
            expire = event.terminal and not topic.startswith("org:")
            args += [maxlen_for(topic), stored, topic, event.type, rest, job_id, int(expire)]
    # the script's SHA is computed once; the connection is the process's current one
    ids = iter(i.decode() for i in _publish_script()(keys=keys, args=args, client=client()))
    out = [
        events.envelope(next(ids), event.type, topic, ts, event.body)
        for event in batch
        for topic in event.topics
    ]
    for event in batch:
        metrics.inc("events_published", event.type, len(event.topics))
    return out
