"""Two fixes to daphne 4.2 that the WebSocket stream needs, installed by ``config.asgi``.

- Close codes. daphne closes through autobahn's ``sendClose``, which accepts only 1000 and
  3000-4999 from application code and raises on anything else, so ``websocket.close`` with
  1008 (policy violation: not authenticated) or 1012 (service restart) never reached the
  client. The frame itself is valid: autobahn's ``sendCloseFrame`` sends it, as autobahn does
  for its own protocol errors.
- Shutdown. On SIGTERM daphne cancels every application (``kill_all_applications``), but a
  connection that has not sent a request yet has no application, and the ``KeyError`` it
  raised ended the loop before anything was cancelled: open WebSockets were cut (1006)
  instead of being closed, and their streams were never cleaned up.

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

    WebSocketProtocol.serverClose = serverClose
    Server.kill_all_applications = kill_all_applications
    Server._intake_compat = True
    return True
