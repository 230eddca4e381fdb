"""The topic registry: apps plug their topic kinds into the stream core.

A topic is ``<prefix>:<ident>`` (``job:<uuid>``, ``org:<id>``, ``bom:<id>``). The core knows no
app: each app registers its kinds in its ``AppConfig.ready()``::

    from realtime import topics

    topics.register(
        "bom",
        authorize=bom_visible,        # (ident, organization_id) -> bool; sync, may use the ORM
        snapshot=bom_snapshot,        # (ident) -> dict | None: the body of `snapshot` / `reset`
        ended=bom_run_ended,          # (snapshot body) -> bool: nothing more will come
        terminal_events={"enrichment.completed", "enrichment.failed"},
    )

``authorize`` answers False for an unknown ident and for another tenant's alike, so a caller
cannot tell them apart. ``snapshot`` returns the current state merged into the envelope of the
``snapshot`` and ``reset`` events (``{"job": {...}}``, ``{"bom": {...}, "state": {...}}``), or None
when the object is gone. ``ended`` says whether a stream opened on this snapshot has nothing left
to wait for (a job stream then answers 204); ``terminal_events`` are the event types after which
a single-topic stream closes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Authorize = Callable[[str, int], bool]
Snapshot = Callable[[str], "dict[str, Any] | None"]
Ended = Callable[["dict[str, Any]"], bool]

PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
IDENT_RE = re.compile(r"^[0-9A-Za-z-]{1,64}$")


@dataclass(frozen=True)
class TopicKind:
    prefix: str
    authorize: Authorize
    snapshot: Snapshot
    ended: Ended
    terminal_events: frozenset[str]


_kinds: dict[str, TopicKind] = {}


def _never_ends(body: dict[str, Any]) -> bool:
    return False


def register(
    prefix: str,
    *,
    authorize: Authorize,
    snapshot: Snapshot,
    ended: Ended | None = None,
    terminal_events: Iterable[str] = (),
) -> TopicKind:
    """Register (or replace, for tests) the topic kind ``prefix``."""
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"'{prefix}' is not a topic prefix (lower-case letters and digits)")
    kind = TopicKind(prefix, authorize, snapshot, ended or _never_ends, frozenset(terminal_events))
    _kinds[prefix] = kind
    return kind


def get(prefix: str) -> TopicKind | None:
    return _kinds.get(prefix)


def registered() -> list[str]:
    return sorted(_kinds)


def parse(topic: str) -> tuple[TopicKind, str] | None:
    """The registered kind and ident of ``topic``, or None for a malformed or unknown one."""
    prefix, sep, ident = topic.partition(":")
    kind = _kinds.get(prefix)
    if not sep or kind is None or not IDENT_RE.match(ident):
        return None
    return kind, ident


def terminal_event_types() -> frozenset[str]:
    """Every registered kind's terminal event types."""
    out: set[str] = set()
    for kind in _kinds.values():
        out |= kind.terminal_events
    return frozenset(out)
