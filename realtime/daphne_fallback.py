"""The slow-reader guard through public Twisted API only: what ``realtime.daphne_compat``
uses when its start-up check did not find Twisted's buffer internals (``unsent_guard`` off).

Twisted pauses a transport's streaming producer once more than ``bufferSize`` (64 KiB) waits
unsent, and resumes it when the buffer drains: a stream that sees its connection paused holds
its events in its own bounded queue (where progress coalesces and an overflow ends in a
``reset``), exactly as it does when it reads the buffer's size directly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("realtime.daphne_compat")

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


def paused_guard(protocol: Any, web_request: type) -> Callable[[], int] | None:
    """The slow-reader guard through public Twisted API only, for when Twisted's buffer
    internals are not where ``unsent_bytes`` reads them: PAUSED while the transport has paused
    its producer (past 64 KiB unsent), else 0. An HTTP channel is its transport's producer
    already; a WebSocket gets one of its own."""
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
