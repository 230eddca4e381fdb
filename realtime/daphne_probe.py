"""Every private part of daphne, Twisted, autobahn and channels-redis that the streams rely on,
checked once at start-up on objects made the way those libraries make them.

``realtime.daphne_compat`` and the hub read or replace attributes that are not public API, for
speed. A new release of one of those libraries may rename any of them; then the speed-up must
not half-work (or, worse, silently leave a slow reader's bytes to pile up without limit). Each
entry below names the feature that needs it; a feature with a missing part is turned off, an
ERROR names the part, and the plain path (daphne's own ``send``, a public-API slow-reader
guard) serves instead. ``requirements.txt`` pins the versions these were checked against.
"""

from __future__ import annotations

import importlib
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger("realtime.daphne_compat")

# feature -> what it does without its private parts
FEATURES = {
    "close_codes": "WebSocket closes with 1008/1012 go out as autobahn allows (1000, 3000-4999)",
    "shutdown": "daphne's own kill_all_applications on SIGTERM",
    "close_handshake": "autobahn's 1 s close handshake",
    "write_through": "Twisted's buffered writes (a loop turn per write)",
    "direct_writes": "each event is sent through daphne's send per connection (slower)",
    "unsent_guard": "the slow-reader guard watches Twisted's public producer pause instead",
    "hub_read_ahead": "the hub hands over one message per read (no batching)",
}

# (feature, where the attribute is, attribute). Where: a class or module attribute (dotted), an
# object made in ``SUBJECTS`` as the library makes one for a connection, or "set in <function>"
# for an attribute that only that function assigns (on an object the probe cannot make).
# Twisted's write buffer: class defaults that each connection overwrites as it writes, and a
# counter its __init__ sets
BUFFER_OWNER = "twisted.internet.tcp.Connection"
BUFFER_PARTS = ("dataBuffer", "offset")
BUFFER_COUNTER = "set in twisted.internet.abstract.FileDescriptor.__init__"
REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("close_codes", "daphne.ws_protocol.WebSocketProtocol", "serverClose"),
    ("close_codes", "daphne.ws_protocol.WebSocketProtocol", "sendCloseFrame"),
    ("shutdown", "daphne.server.Server", "kill_all_applications"),
    ("shutdown", "set in daphne.server.Server.run", "connections"),
    ("close_handshake", "daphne.ws_protocol.WebSocketFactory", "__init__"),
    ("close_handshake", "daphne.ws_protocol.WebSocketFactory", "setProtocolOptions"),
    ("write_through", "twisted.internet.tcp.Connection", "write"),
    ("write_through", "twisted.internet.tcp.Connection", "writeSequence"),
    *(
        ("write_through", "twisted TCP connection", name)
        for name in ("writeSomeData", "TLS", "connected", "disconnecting", "_writeDisconnected")
    ),
    *(("write_through", BUFFER_OWNER, name) for name in BUFFER_PARTS),
    ("write_through", BUFFER_COUNTER, "_tempDataLen"),
    ("direct_writes", "daphne.server.Server", "handle_reply"),
    ("direct_writes", "set in daphne.server.Server.run", "connections"),
    *(
        ("direct_writes", "twisted TCP connection", name)
        for name in ("socket", "setTcpNoDelay", "connected", "disconnecting", "_writeDisconnected")
    ),
    *(("direct_writes", BUFFER_OWNER, name) for name in BUFFER_PARTS),
    ("direct_writes", BUFFER_COUNTER, "_tempDataLen"),
    *(
        ("direct_writes", "daphne.http_protocol.WebRequest", name)
        for name in ("finished", "_disconnected", "chunked")
    ),
    ("direct_writes", "set in twisted.web.http.Request.__init__", "channel"),
    *(
        ("direct_writes", "autobahn protocol after its connection is made", name)
        for name in (
            "state",
            "STATE_OPEN",
            "_perMessageCompress",
            "send_queue",
            "trackedTimings",
            "logOctets",
            "logFrames",
            "autoFragmentSize",
            "maxMessagePayloadSize",
            "trafficStats",
            "factory",
        )
    ),
    *(
        ("direct_writes", "autobahn TrafficStats", name)
        for name in (
            "outgoingWebSocketMessages",
            "outgoingWebSocketFrames",
            "outgoingOctetsAppLevel",
            "outgoingOctetsWebSocketLevel",
            "outgoingOctetsWireLevel",
        )
    ),
    ("direct_writes", "autobahn server factory", "maskServerFrames"),
    ("unsent_guard", "daphne.server.Server", "handle_reply"),
    ("unsent_guard", "set in twisted.web.http.Request.__init__", "channel"),
    *(("unsent_guard", BUFFER_OWNER, name) for name in BUFFER_PARTS),
    ("unsent_guard", BUFFER_COUNTER, "_tempDataLen"),
    ("hub_read_ahead", "channels_redis.pubsub.RedisPubSubChannelLayer", "_get_layer"),
    ("hub_read_ahead", "channels_redis.pubsub.RedisPubSubChannelLayer", "deserialize"),
    ("hub_read_ahead", "set in channels_redis.pubsub.RedisPubSubLoopLayer.__init__", "channels"),
)


def _import(dotted: str) -> Any:
    """``a.b.C.f``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


def _tcp_connection() -> Any:
    from twisted.internet import reactor, tcp
    from twisted.internet.protocol import Protocol

    a, b = socket.socketpair()
    try:
        return tcp.Server(a, Protocol(), ("127.0.0.1", 0), None, 0, reactor)
    finally:
        a.close()
        b.close()


def _autobahn_protocol() -> Any:
    from autobahn.twisted.websocket import WebSocketServerFactory
    from autobahn.websocket.protocol import WebSocketProtocol as Base
    from daphne.ws_protocol import WebSocketProtocol

    protocol = WebSocketProtocol()
    protocol.factory = WebSocketServerFactory()
    protocol.peer = "probe"
    Base._connectionMade(protocol)  # what sets the per-connection state; no network needed
    return protocol


SUBJECTS: dict[str, Callable[[], Any]] = {
    "twisted TCP connection": _tcp_connection,
    "autobahn protocol after its connection is made": _autobahn_protocol,
    "autobahn TrafficStats": lambda: _import("autobahn.websocket.protocol.TrafficStats")(),
    "autobahn server factory": lambda: _import(
        "autobahn.twisted.websocket.WebSocketServerFactory"
    )(),
}


def missing_parts() -> dict[str, list[str]]:
    """Per feature, the private parts that are not where they were: ``{feature: ["owner.name"]}``
    (empty when all is there)."""
    subjects: dict[str, Any] = {}
    missing: dict[str, list[str]] = {}
    for feature, owner, name in REQUIRED:
        try:
            if owner.startswith("set in "):
                present = name in _import(owner.removeprefix("set in ")).__code__.co_names
            else:
                if owner not in subjects:
                    make = SUBJECTS.get(owner)
                    subjects[owner] = make() if make else _import(owner)
                present = hasattr(subjects[owner], name)
        except Exception as exc:  # the object itself cannot be made as it used to be
            log.debug("probe of %s failed", owner, exc_info=True)
            present, name = False, f"{name} ({owner} could not be made: {exc!r})"
        if not present:
            missing.setdefault(feature, []).append(f"{owner}.{name}")
    return missing


def report(missing: dict[str, list[str]]) -> None:
    for feature, parts in missing.items():
        log.error(
            "realtime: %s is off: %s missing (a daphne/Twisted/autobahn/channels-redis upgrade?); "
            "instead: %s",
            feature,
            ", ".join(sorted(set(parts))),
            FEATURES[feature],
        )
