"""The per-process hub: one Channels-layer group membership per topic, not per connection.

Every daphne process has one hub per event loop. It joins a topic's group when the first local
connection asks for the topic and leaves when the last one goes, reads the layer once, and hands
each event (encoded once, by the publisher) to the local connections' own bounded queues.
Per-connection layer membership would cost a Redis subscription and a consumer dispatch per
client per event; here a delivery is a dict lookup and a queue append.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from . import events
from .metrics import metrics

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.listeners: dict[str, set[Listener]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def _ensure_started(self) -> None:
        if self.channel is None:
            self.channel = await self.layer.new_channel(prefix="hub.")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="realtime-hub")

    async def subscribe(self, topic: str, listener: Listener) -> None:
        async with self._lock:
            await self._ensure_started()
            first = topic not in self.listeners
            self.listeners.setdefault(topic, set()).add(listener)
            if first:
                await self.layer.group_add(events.group_name(topic), self.channel)

    async def unsubscribe(self, topic: str, listener: Listener) -> None:
        async with self._lock:
            members = self.listeners.get(topic)
            if not members:
                return
            members.discard(listener)
            if not members:
                del self.listeners[topic]
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(events.group_name(topic), self.channel)

    async def _run(self) -> None:
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer reconnects by itself; clients recover from the log
                log.exception("realtime hub: receive failed")
                await asyncio.sleep(0.5)
                continue
            self.dispatch(message)

    def dispatch(self, message: dict[str, Any]) -> None:
        topic = message.get("topic")
        for listener in list(self.listeners.get(topic, ())):
            try:
                listener(message)
            except Exception:
                log.exception("realtime hub: listener failed")
        metrics.inc("events_received_by_hub", message.get("event_type", "?"))


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
