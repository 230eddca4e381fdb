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
import uuid
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from . import events
from .metrics import metrics

log = logging.getLogger(__name__)

Listener = Callable[[list[dict[str, Any]]], None]


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.listeners: dict[str, set[Listener]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._syncs: dict[str, asyncio.Future[None]] = {}

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
                await self._joined(topic)

    async def _joined(self, topic: str) -> None:
        """Return once the layer really delivers ``topic``'s events to this hub.

        The pub/sub layer's ``group_add`` only *sends* SUBSCRIBE: Redis may still run a
        subscriber's log read (on another connection) before it, and an event published in
        between would be in neither the replay nor the live feed. So the hub sends itself a
        marker through the group until one comes back; whatever is published after that is
        delivered, and the caller reads the log only then. Once per topic and process.
        """
        token = uuid.uuid4().hex
        arrived = self._syncs[token] = asyncio.get_running_loop().create_future()
        marker = {"type": "realtime.sync", "topic": topic, "sync": token}
        try:
            for attempt in range(1, 21):
                await self.layer.group_send(events.group_name(topic), marker)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(arrived), 0.05 * attempt)
                    return
            log.warning("realtime hub: no confirmation of the subscription to %s", topic)
        finally:
            self._syncs.pop(token, None)

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
            self.dispatch(message, *self._ready())

    def _ready(self) -> list[dict[str, Any]]:
        """The messages the layer has already read for this hub, taken without waiting.

        Events published together (a job's start and its first stage) arrive in one read;
        handed over together, each connection gets them in one write, in one pass over the
        connections, instead of the second waiting for the whole first pass. This reads the
        Pub/Sub layer's own per-channel queue; with any other layer it takes nothing.
        """
        try:
            queue = self.layer._get_layer().channels[self.channel]
            deserialize = self.layer.deserialize
        except (AttributeError, KeyError):
            return []
        ready = []
        while not queue.empty():
            ready.append(deserialize(queue.get_nowait()))
        return ready

    def dispatch(self, *messages: dict[str, Any]) -> None:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            if "sync" in message:  # a hub's subscription marker (this one's or another's)
                arrived = self._syncs.get(message["sync"])
                if arrived is not None and not arrived.done():
                    arrived.set_result(None)
                continue
            by_topic.setdefault(message.get("topic"), []).append(message)  # type: ignore[arg-type]
            metrics.inc("events_received_by_hub", message.get("event_type", "?"))
        for topic, batch in by_topic.items():
            for listener in list(self.listeners.get(topic, ())):
                try:
                    listener(batch)
                except Exception:
                    log.exception("realtime hub: listener failed")


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
