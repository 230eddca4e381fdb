"""Changes to daphne 4.2 (and the Twisted and autobahn under it) that the streams need,
installed by ``config.asgi``.

- Close codes. daphne closes through autobahn's ``sendClose``, which accepts only 1000 and
  3000-4999 from application code and raises on anything else, so ``websocket.close`` with
  1008 (policy violation: not authenticated) or 1012 (service restart) never reached the
  client. The frame itself is valid: autobahn's ``sendCloseFrame`` sends it, as autobahn does
  for its own protocol errors.
- Shutdown. On SIGTERM daphne cancels every application (``kill_all_applications``), but a
  connection that has not sent a request yet has no application, and the ``KeyError`` it
  raised ended the loop before anything was cancelled: open WebSockets were cut (1006)
  instead of being closed, and their streams were never cleaned up.
- Close handshake. A WebSocket the server closes gets ``CLOSE_HANDSHAKE_SECONDS`` (autobahn:
  1 s) to answer, so a client closed for reading too slowly can still read its reset.
- Writes. Twisted's TCP transport never writes at once: it buffers, registers the socket for
  writability (an ``epoll_ctl``), sends on the next loop turn and unregisters (another). With
  a thousand streams that is three syscalls and a loop turn per event per client, and no client
  got a byte until every connection had been served. ``install_write_through`` sends straight
  away when nothing is buffered, as asyncio's own transports do, and buffers only what the
  socket did not take; order is kept because it never writes past buffered data. Measured with
  ``bench/stream_latency.py`` at 1,000 SSE clients: the first client has an event after 15 ms
  instead of 65, daphne's CPU 24 % instead of 31 %.

- Garbage collection. A daphne process holding a thousand streams has a large, long-lived
  heap, and CPython's full collections walked all of it (with Django's own objects) in
  pauses of 100-600 ms, some in the middle of a fan-out; young collections every 700
  allocations then promoted enough to bring the next one on. ``tune_gc`` freezes what exists
  once the application is loaded (Django, the app: never garbage, never walked again) and
  collects the young generation every ``GC_YOUNG_THRESHOLD`` allocations instead.

Start-up check. ``install`` first looks for every private part these rely on
(``realtime.daphne_probe.REQUIRED``, checked on objects made as the libraries make them); a
feature with a part missing is left off with an ERROR that names the part, and the plain path
serves: daphne's own ``send``, and a slow-reader guard on Twisted's public producer pause.

Installed only in a process where daphne is already loaded, so importing the application
elsewhere never pulls in Twisted.

``chunk_writer`` and ``frame_writer`` let the streams write an event's bytes, built once per
process, to every idle connection in the hub's one pass over them: no task woken and no
message framed or encoded per connection. daphne's own ``send`` is a coroutine that never
waits (it hands the message straight to the Twisted protocol), so this changes when the bytes
are written, not what is written or in which order.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import daphne_probe

# 1001 going away, 1008 policy violation, 1011 internal error, 1012 service restart,
# 1013 try again later
SERVER_CLOSE_CODES = frozenset({1001, 1008, 1011, 1012, 1013})
# How long a WebSocket the server closes may take to answer the close. The close frame queues
# behind whatever the client has not read yet, and the client closed for reading too slowly
# (reset, 4408) needs time to read its way to it: autobahn's default of 1 s then cut the
# connection with a TCP reset, which threw away the very reset event it was sent.
CLOSE_HANDSHAKE_SECONDS = 10.0
# Allocations (less deallocations) of tracked objects between young collections (CPython: 700).
GC_YOUNG_THRESHOLD = 10_000

logger = logging.getLogger(__name__)


# Features whose private parts the start-up check did not find (``realtime.daphne_probe``):
# each is off, and its plain path serves instead.
disabled: frozenset[str] = frozenset()


def install() -> bool:
    global disabled
    if "daphne.server" not in sys.modules:
        return False
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    from twisted.internet import defer

    if getattr(Server, "_intake_compat", False):
        return True
    missing = daphne_probe.missing_parts()
    daphne_probe.report(missing)
    if "daphne.server.Server.handle_reply" in missing.get("unsent_guard", ()):
        logger.error(
            "realtime: the slow-reader guard is OFF: without daphne's Server.handle_reply a "
            "stream cannot find its connection, so a client that stops reading makes Twisted "
            "buffer its events without limit. Pin daphne to the version in requirements.txt."
        )
    disabled = frozenset(missing)
    tune_gc()
    Server._intake_compat = True
    if "close_codes" not in disabled:
        _install_close_codes(WebSocketProtocol)
    if "shutdown" not in disabled:
        _install_shutdown(Server, defer)
    if "close_handshake" not in disabled:
        _install_close_handshake(WebSocketFactory)
    if "write_through" not in disabled:
        install_write_through()
    return True


def _install_close_codes(WebSocketProtocol: Any) -> None:
    close = WebSocketProtocol.serverClose

    def serverClose(self, code=None):
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            close(self, code)

    WebSocketProtocol.serverClose = serverClose


def _install_shutdown(Server: Any, defer: Any) -> None:
    def kill_all_applications(self):
        running = [
            details["application_instance"]
            for details in self.connections.values()
            if "application_instance" in details and not details["application_instance"].done()
        ]
        for instance in running:
            instance.cancel()
        logger.info("Killed %i pending application instances", len(running))
        waiting = defer.Deferred.fromFuture(asyncio.gather(*running, return_exceptions=True))
        waiting.addErrback(lambda _: None)
        return waiting

    Server.kill_all_applications = kill_all_applications


def _install_close_handshake(WebSocketFactory: Any) -> None:
    factory_init = WebSocketFactory.__init__

    def factory_with_close_time(self, *args, **kwargs):
        factory_init(self, *args, **kwargs)
        self.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_SECONDS)

    WebSocketFactory.__init__ = factory_with_close_time


def tune_gc() -> None:
    """Freeze the objects that exist now (the loaded application) out of every future
    collection, and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _daphne_connection(send: Any) -> tuple[dict[Any, Any], Any] | None:
    """daphne's connection table and the protocol behind ``send``, if ``send`` is daphne's
    own (``partial(server.handle_reply, protocol)``)."""
    server_module = sys.modules.get("daphne.server")
    if server_module is None or not isinstance(send, functools.partial) or len(send.args) != 1:
        return None
    handle_reply = getattr(server_module.Server, "handle_reply", None)
    if handle_reply is None or getattr(send.func, "__func__", None) is not handle_reply:
        return None
    return send.func.__self__.connections, send.args[0]


def _tcp_transport(protocol: Any) -> Any:
    """The Twisted TCP connection under a daphne protocol (an HTTP request's channel's, or a
    WebSocket's own), or None for anything else (TLS, a closed channel)."""
    web_request, tcp_server = _classes()
    owner = protocol.channel if isinstance(protocol, web_request) else protocol
    transport = getattr(owner, "transport", None)
    return transport if type(transport) is tcp_server else None


@functools.cache
def _classes() -> tuple[type, type]:
    """daphne's HTTP request and Twisted's TCP server connection classes (imported late: this
    module is imported where daphne is not)."""
    from daphne.http_protocol import WebRequest
    from twisted.internet import tcp

    return WebRequest, tcp.Server


def _unsent(conn: Any) -> int:
    return len(conn.dataBuffer) - conn.offset + conn._tempDataLen


def unsent_bytes(send: Any) -> Callable[[], int] | None:
    """How many bytes of the connection behind daphne's ``send`` Twisted holds because the
    socket did not take them yet: a client that reads slowly. Twisted buffers without limit,
    so a stream checks this before it writes more (and queues, coalesces or resets instead)."""
    found = _daphne_connection(send)
    if found is None:
        return None
    protocol = found[1]
    if "unsent_guard" in disabled:
        return _paused_guard(protocol)

    def unsent() -> int:
        conn = _tcp_transport(protocol)
        return 0 if conn is None else _unsent(conn)

    return unsent


PAUSED = 1 << 30  # "unsent bytes" of a connection whose transport paused its producer


class _Backpressure:
    """Told by a Twisted transport when its buffer is past ``bufferSize`` (64 KiB) and when it
    drained: the public way to know that a client reads slowly."""

    paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = False


@functools.cache
def _declare_producer() -> None:
    from twisted.internet.interfaces import IPushProducer
    from zope.interface import classImplements

    classImplements(_Backpressure, IPushProducer)


def _paused_guard(protocol: Any) -> Callable[[], int] | None:
    """The slow-reader guard through public Twisted API only, for when Twisted's buffer
    internals are not where ``unsent_bytes`` reads them: PAUSED while the transport has paused
    its producer (past 64 KiB unsent), else 0. An HTTP channel is its transport's producer
    already; a WebSocket gets one of its own."""
    web_request, _ = _classes()
    if isinstance(protocol, web_request):

        def unsent_http() -> int:
            transport = getattr(protocol.channel, "transport", None)
            return PAUSED if getattr(transport, "producerPaused", False) else 0

        return unsent_http
    _declare_producer()
    pressure = _Backpressure()
    try:
        protocol.transport.registerProducer(pressure, True)
    except Exception:
        logger.error("realtime: no slow-reader guard for this WebSocket", exc_info=True)
        return None
    return lambda: PAUSED if pressure.paused else 0


def _protocol_over_tcp(send: Any) -> tuple[Any, Any] | None:
    """The daphne protocol behind ``send`` and its plain TCP connection, or None (not daphne's
    ``send``, TLS, a closed channel, or the direct writes are off)."""
    if "direct_writes" in disabled:
        return None
    found = _daphne_connection(send)
    if found is None:
        return None
    transport = _tcp_transport(found[1])
    return None if transport is None else (found[1], transport)


LAST_CHUNK = b"0\r\n\r\n"  # the end of a chunked HTTP body


def chunk_writer(send: Any) -> Callable[..., bool] | None:
    """For a streaming HTTP response on daphne over plain TCP: write one ready-made chunk of
    the body (``b"<size hex>\\r\\n" + data + b"\\r\\n"``, built once per process for every
    client) straight to the socket; False when the response is over or the client is behind
    (the caller then queues it for its sender). This is ``Request.write`` less the per-client
    encoding and Twisted's layers.

    ``write(chunk, last=True)`` ends the body in the same write: a stream that closes after
    its terminal event gives the client both at once, in one ``send()`` instead of two, and
    the response's own end (``more_body: False``) then writes nothing more."""
    found = _protocol_over_tcp(send)
    if found is None:
        return None
    request, transport = found
    # A stream writes small frames far apart: Nagle's algorithm would hold an event back
    # until the client acknowledged the one before (which it may delay by 40 ms). autobahn
    # turns it off for WebSockets; daphne leaves it on for HTTP.
    transport.setTcpNoDelay(True)

    def write(chunk: bytes, last: bool = False) -> bool:
        if request.finished or request._disconnected or not request.chunked:
            return False
        if not last:
            return _send_ready(transport, chunk)
        if not _send_ready(transport, chunk + LAST_CHUNK):
            return False
        request.chunked = 0  # the body's end is out: Request.finish() must not write it again
        return True

    return write


def text_frame(payload: bytes) -> bytes:
    """A whole, unmasked WebSocket text frame (what a server sends) holding ``payload``."""
    n = len(payload)
    if n <= 125:
        head = bytes((0x81, n))
    elif n <= 0xFFFF:
        head = b"\x81\x7e" + n.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + n.to_bytes(8, "big")
    return head + payload


def _payload_size(frame: bytes) -> int:
    """The payload length of a whole, unmasked frame made by ``text_frame``."""
    return len(frame) - (2 if frame[1] <= 125 else 4 if frame[1] == 126 else 10)


def frame_writer(send: Any) -> Callable[..., bool] | None:
    """For an open WebSocket on daphne over plain TCP: write ready-made text frames
    (``text_frame``, built once per process for every client) straight to the socket, counted
    as autobahn counts its frames; False whenever autobahn would do more than frame and write
    (compression, fragmentation, queued or logged writes, a limit, a socket not open) or the
    client is behind: the caller then queues it for its sender. This is ``sendMessage`` less
    the per-client framing and Twisted's layers."""
    found = _protocol_over_tcp(send)
    if found is None:
        return None
    p, transport = found

    def write(*frames: bytes) -> bool:
        # several frames (events that arrived together) go out in one socket write
        if len(frames) == 1:
            data = frames[0]
            payload = largest = _payload_size(data)
        else:
            data = b"".join(frames)
            sizes = [_payload_size(f) for f in frames]
            largest, payload = max(sizes), sum(sizes)
        if (
            p.state != p.STATE_OPEN
            or p._perMessageCompress is not None
            or p.send_queue
            or p.trackedTimings
            or p.logOctets
            or p.logFrames
            or p.factory.maskServerFrames
            or 0 < p.autoFragmentSize < largest
            or 0 < p.maxMessagePayloadSize < largest
            or not _send_ready(transport, data)
        ):
            return False
        stats = p.trafficStats
        stats.outgoingWebSocketMessages += len(frames)
        stats.outgoingWebSocketFrames += len(frames)
        stats.outgoingOctetsAppLevel += payload
        stats.outgoingOctetsWebSocketLevel += payload
        stats.outgoingOctetsWireLevel += len(data)
        return True

    return write


def _send_ready(conn: Any, data: bytes) -> bool:
    """Send ``data`` on a TCP connection that has nothing waiting unsent: as much as the
    socket takes now, the rest through Twisted's buffer. False (nothing written) when bytes
    are already waiting, or the connection is closing or lost."""
    if (
        conn._tempDataLen
        or conn.offset != len(conn.dataBuffer)
        or not conn.connected
        or conn.disconnecting
        or conn._writeDisconnected
    ):
        return False
    try:
        sent = conn.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        return False  # lost: Twisted finds out on its own, and the stream's sender with it
    if sent != len(data):
        (_buffered_write or type(conn).write)(conn, data[sent:])
    return True


def write_through(conn, data: bytes, buffered_write) -> None:
    """Send ``data`` on ``conn`` (a Twisted TCP connection) at once when nothing is buffered;
    hand what the socket did not take, or everything when something is buffered, to Twisted."""
    if (
        data
        and not conn.TLS  # a TLS connection writes through its own layer
        and not conn._tempDataLen
        and conn.offset == len(conn.dataBuffer)
        and conn.connected
        and not conn.disconnecting
        and not conn._writeDisconnected
    ):
        sent = conn.writeSomeData(data)  # bytes sent, or an exception for a lost connection
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
    buffered_write(conn, data)


_buffered_write: Callable[[Any, bytes], None] | None = None  # Twisted's own, once replaced


def install_write_through() -> None:
    global _buffered_write
    from twisted.internet import tcp

    buffered_write = _buffered_write = tcp.Connection.write
    buffered_write_sequence = tcp.Connection.writeSequence

    def write(self, data: bytes) -> None:
        write_through(self, data, buffered_write)

    def writeSequence(self, iovec) -> None:
        if self.TLS:
            buffered_write_sequence(self, iovec)
        else:
            write_through(self, b"".join(iovec), buffered_write)

    tcp.Connection.write = write
    tcp.Connection.writeSequence = writeSequence
