"""Three changes to daphne 4.2 (and the Twisted under it) that the streams need, installed by
``config.asgi``.

- Close codes. daphne closes through autobahn's ``sendClose``, which accepts only 1000 and
  3000-4999 from application code and raises on anything else, so ``websocket.close`` with
  1008 (policy violation: not authenticated) or 1012 (service restart) never reached the
  client. The frame itself is valid: autobahn's ``sendCloseFrame`` sends it, as autobahn does
  for its own protocol errors.
- Shutdown. On SIGTERM daphne cancels every application (``kill_all_applications``), but a
  connection that has not sent a request yet has no application, and the ``KeyError`` it
  raised ended the loop before anything was cancelled: open WebSockets were cut (1006)
  instead of being closed, and their streams were never cleaned up.
- Writes. Twisted's TCP transport never writes at once: it buffers, registers the socket for
  writability (an ``epoll_ctl``), sends on the next loop turn and unregisters (another). With
  a thousand streams that is three syscalls and a loop turn per event per client, and no client
  got a byte until every connection had been served. ``install_write_through`` sends straight
  away when nothing is buffered, as asyncio's own transports do, and buffers only what the
  socket did not take; order is kept because it never writes past buffered data. Measured with
  ``bench/stream_latency.py`` at 1,000 SSE clients: the first client has an event after 15 ms
  instead of 65, daphne's CPU 24 % instead of 31 %.

Installed only in a process where daphne is already loaded, so importing the application
elsewhere never pulls in Twisted.
"""

from __future__ import annotations

import asyncio
import logging
import sys

# 1001 going away, 1008 policy violation, 1011 internal error, 1012 service restart,
# 1013 try again later
SERVER_CLOSE_CODES = frozenset({1001, 1008, 1011, 1012, 1013})

logger = logging.getLogger(__name__)


def install() -> bool:
    if "daphne.server" not in sys.modules:
        return False
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import defer

    if getattr(Server, "_intake_compat", False):
        return True
    close = WebSocketProtocol.serverClose

    def serverClose(self, code=None):
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            close(self, code)

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

    install_write_through()
    WebSocketProtocol.serverClose = serverClose
    Server.kill_all_applications = kill_all_applications
    Server._intake_compat = True
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


def install_write_through() -> None:
    from twisted.internet import tcp

    buffered_write = tcp.Connection.write
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
