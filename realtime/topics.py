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

Two more things come from the apps, because the core knows no tenancy and no summaries:

- ``register_membership(lookup)``: ``lookup(user_id, organization)`` answers which organization
  a user acts for (``organization``: an id or slug the client named, or None for their default)
  and with what role, as a ``Member``, or None when they belong to none of that name. Stream
  authentication, stream tokens and polling all go through it.
- ``register_summary(summary)``: ``summary(organization_id, limit)`` builds the status summary
  that the summary stream and ``?summary=1`` send (``event: status``), or None when the
  organization is gone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

Authorize = Callable[[str, int], bool]
Snapshot = Callable[[str], "dict[str, Any] | None"]
Ended = Callable[["dict[str, Any]"], bool]

PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
IDENT_RE = re.compile(r"^[0-9A-Za-z-]{1,64}$")  # fullmatch: ``$`` alone lets "\n" end it


@dataclass(frozen=True)
class TopicKind:
    prefix: str
    authorize: Authorize
    snapshot: Snapshot
    ended: Ended
    terminal_events: frozenset[str]


_kinds: dict[str, TopicKind] = {}
_terminal: frozenset[str] = frozenset()  # the union of every kind's, kept for the hot path


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
    if not PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"'{prefix}' is not a topic prefix (lower-case letters and digits)")
    global _terminal
    kind = TopicKind(prefix, authorize, snapshot, ended or _never_ends, frozenset(terminal_events))
    _kinds[prefix] = kind
    _terminal = frozenset().union(*(k.terminal_events for k in _kinds.values()))
    return kind


def unregister(prefix: str) -> None:
    """Forget the kind ``prefix`` (tests that register a kind of their own clean up with it)."""
    global _terminal
    _kinds.pop(prefix, None)
    _terminal = frozenset().union(*(k.terminal_events for k in _kinds.values()))


def get(prefix: str) -> TopicKind | None:
    return _kinds.get(prefix)


def registered() -> list[str]:
    return sorted(_kinds)


def parse(topic: str) -> tuple[TopicKind, str] | None:
    """The registered kind and ident of ``topic``, or None for a malformed or unknown one."""
    prefix, sep, ident = topic.partition(":")
    kind = _kinds.get(prefix)
    if not sep or kind is None or not IDENT_RE.fullmatch(ident):
        return None
    return kind, ident


def terminal_events_of(topic: str) -> frozenset[str]:
    """The event types after which a stream on ``topic`` alone closes (none if unknown)."""
    kind = _kinds.get(topic.partition(":")[0])
    return kind.terminal_events if kind is not None else frozenset()


def ends_by_state(topic: str) -> bool:
    """Whether ``topic``'s kind registered an ``ended`` (its state can say it has ended)."""
    kind = _kinds.get(topic.partition(":")[0])
    return kind is not None and kind.ended is not _never_ends


def may_end(topic: str, event_type: str) -> bool:
    """Whether ``event_type`` may end ``topic``: its kind's terminal event, or another kind's
    on a topic whose state can say it has ended (a BOM run's ``enrichment.completed`` is the
    last event on its job's topic, after ``job.completed``)."""
    if event_type in terminal_events_of(topic):
        return True
    return ends_by_state(topic) and event_type in _terminal


def ended(topic: str, body: dict[str, Any]) -> bool:
    """Whether ``body`` (a snapshot of ``topic``) shows that nothing more will come."""
    kind = _kinds.get(topic.partition(":")[0])
    if kind is None:
        return False
    try:
        return bool(kind.ended(body))
    except (KeyError, TypeError, AttributeError):
        return False  # the snapshot of an object that is gone has none of the kind's fields


def terminal_event_types() -> frozenset[str]:
    """Every registered kind's terminal event types (one set, kept up to date by ``register``:
    a stream asks on every event it sends)."""
    return _terminal


# ---------------------------------------------------------------------- tenancy and summaries


@dataclass(frozen=True)
class Member:
    """The organization a user acts for, and their role in it."""

    organization_id: int
    role: str


MembershipLookup = Callable[[int, "str | None"], "Member | None"]
Summary = Callable[[int, int], "dict[str, Any] | None"]

_membership: MembershipLookup | None = None
_summary: Summary | None = None


def register_membership(lookup: MembershipLookup) -> None:
    """Set who answers ``membership()`` (the app that owns organizations, in its ``ready()``)."""
    global _membership
    _membership = lookup


def membership(user_id: int, organization: str | None = None) -> Member | None:
    """The membership of an active user in ``organization`` (id or slug; None: their default)."""
    if _membership is None:
        raise ImproperlyConfigured(
            "No app registered a membership lookup: call realtime.topics.register_membership() "
            "from the AppConfig.ready() of the app that owns organizations."
        )
    return _membership(user_id, organization)


def register_summary(summary: Summary) -> None:
    """Set what the status-summary stream sends (``summary(organization_id, limit)``)."""
    global _summary
    _summary = summary


def summary_provider() -> Summary | None:
    return _summary
