"""The replayable event log: one bounded Redis Stream per topic.

Every event is appended here *before* it is fanned out, so its stream id is its cursor and a
client that missed live messages recovers by reading after the last id it saw.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import events
from .redis import client

KEY_PREFIX = "intake:log:"
STREAM_FIELD = b"e"


def stream_key(topic: str) -> str:
    return KEY_PREFIX + topic


def maxlen_for(topic: str) -> int:
    conf = settings.REALTIME
    return conf["ORG_LOG_MAXLEN"] if topic.startswith("org:") else conf["JOB_LOG_MAXLEN"]


def decode_entry(topic: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A log entry as the envelope clients see."""
    raw = json.loads(fields[STREAM_FIELD])
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return events.envelope(eid, raw.pop("type"), topic, raw.pop("ts"), raw)


@dataclass
class Replay:
    events: list[dict[str, Any]]
    # True when the cursor is older than the oldest event still kept: the client missed some.
    gap: bool


_CURSOR = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


def valid_cursor(cursor: str) -> bool:
    """A Redis Stream id ``<ms>-<seq>`` (or ``<ms>``): ASCII digits below 2**64 - 1 each
    (``"²".isdigit()`` is true, Redis refuses an id out of range, and the largest id has no
    id after it: ``XRANGE`` refuses it as an exclusive start)."""
    found = _CURSOR.fullmatch(cursor)
    return found is not None and all(int(p) < 2**64 - 1 for p in found.groups() if p is not None)


# the most events one read of a log returns (a stream resumed further back gets ``reset``)
REPLAY_MAX = 10_000


def read_after(topic: str, cursor: str | None, count: int = REPLAY_MAX) -> Replay:
    """Events of ``topic`` after ``cursor`` (exclusive), oldest first."""
    key = stream_key(topic)
    r = client()
    if not cursor:
        entries = r.xrange(key, "-", "+", count=count)
        return Replay([decode_entry(topic, i, f) for i, f in entries], gap=False)
    entries = r.xrange(key, "(" + cursor, "+", count=count)
    first = r.xrange(key, "-", "+", count=1)
    if not first:
        # the topic's log has expired (a job that ended over a day ago): all is missed
        return Replay([], gap=True)
    first_id = first[0][0].decode()
    gap = cursor_key(cursor) < cursor_key(first_id) and not _exists(key, cursor)
    return Replay([decode_entry(topic, i, f) for i, f in entries], gap=gap)


def _exists(key: str, cursor: str) -> bool:
    return bool(client().xrange(key, cursor, cursor, count=1))


def cursor_key(event_id: str) -> tuple[int, int]:
    """A stream id as a comparable (ms, seq) pair."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def last_id(topic: str) -> str | None:
    """The cursor of the newest event of ``topic`` (what a rendered page embeds)."""
    entries = client().xrevrange(stream_key(topic), "+", "-", count=1)
    return entries[0][0].decode() if entries else None


def last_event(topic: str) -> dict[str, Any] | None:
    entries = client().xrevrange(stream_key(topic), "+", "-", count=1)
    return decode_entry(topic, *entries[0]) if entries else None


def recent(topic: str, *, limit: int, skip_types: frozenset[str], scan: int = 2000) -> list[dict]:
    """Up to ``limit`` of the newest events of ``topic`` (newest first), leaving out
    ``skip_types``; looks at no more than ``scan`` entries. For pages that render a feed."""
    skip = tuple(b'{"type":"' + t.encode() + b'"' for t in skip_types)
    out: list[dict[str, Any]] = []
    for entry_id, fields in client().xrevrange(stream_key(topic), "+", "-", count=scan):
        if fields[STREAM_FIELD].startswith(skip):
            continue  # the type leads the stored JSON: skip without decoding
        out.append(decode_entry(topic, entry_id, fields))
        if len(out) >= limit:
            break
    return out
