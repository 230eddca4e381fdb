"""The per-process hub: one Channels-layer group membership per topic, not per connection.

Every daphne process has one hub per event loop. It joins a topic's group when the first local
connection asks for the topic and leaves when the last one goes, reads the layer once, and hands
each event (encoded once, by the publisher) to the local connections' own bounded queues.
Per-connection layer membership would cost a Redis subscription and a consumer dispatch per
client per event; here a delivery is a dict lookup and a queue append.

Redis Pub/Sub forgets what is published while a subscriber is disconnected, and channels-redis
reconnects without telling anyone (channels#1717): clients whose heartbeats kept coming would
wait forever for an event that was lost. So the hub keeps, per topic, the id of the last event
it handed on, watches its layer's Pub/Sub connections, and after a reconnect replays from the
log what came after those ids, holding back live events until the replay is out.
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
from .log import STREAM_FIELD, cursor_key, decode_entry, stream_key
from .metrics import metrics
from .publish import fanout_message
from .redis import async_client

log = logging.getLogger(__name__)

Listener = Callable[[list[dict[str, Any]]], None]

RESYNC_MAX_EVENTS = 10_000  # per topic, as a client's own replay
RESYNC_ATTEMPTS = 20  # half a second apart


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.listeners: dict[str, set[Listener]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._syncs: dict[str, asyncio.Future[None]] = {}
        # per followed topic, the id of the newest event handed on (or, before any, the log's
        # newest when the hub joined): where a replay after a reconnect starts
        self.last_ids: dict[str, str] = {}
        self._held: list[dict[str, Any]] | None = None  # live events held during a resync
        self._resync_task: asyncio.Task[None] | None = None
        self._resync_again = False
        self._watched: set[int] = set()  # ids of the Pub/Sub connections watched
        self.resyncs = 0  # for tests and metrics

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
                # read before joining: whatever comes later is either delivered live or, if a
                # reconnect loses it, replayed from here
                newest = await async_client().xrevrange(stream_key(topic), "+", "-", count=1)
                self.last_ids[topic] = newest[0][0].decode() if newest else "0-0"
                await self.layer.group_add(events.group_name(topic), self.channel)
                self._watch_connections()
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
                self.last_ids.pop(topic, None)
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
            if self._held is None:
                self.dispatch(message, *self._ready())
            else:
                self._hold(message, *self._ready())

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

    def _synced(self, message: dict[str, Any]) -> None:
        """A hub's subscription marker (this one's or another's) came back."""
        arrived = self._syncs.get(message["sync"])
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    def dispatch(self, *messages: dict[str, Any]) -> None:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        last_ids = self.last_ids
        for message in messages:
            if "sync" in message:
                self._synced(message)
                continue
            topic = message.get("topic")
            by_topic.setdefault(topic, []).append(message)  # type: ignore[arg-type]
            if topic in last_ids:
                last_ids[topic] = message["id"]  # type: ignore[index]
            metrics.inc("events_received_by_hub", message.get("event_type", "?"))
        for topic, batch in by_topic.items():
            for listener in list(self.listeners.get(topic, ())):
                try:
                    listener(batch)
                except Exception:
                    log.exception("realtime hub: listener failed")

    # ------------------------------------------------------------------ after a reconnect

    def _hold(self, *messages: dict[str, Any]) -> None:
        assert self._held is not None
        for message in messages:
            if "sync" in message:
                self._synced(message)  # a resync waits for one of these
            else:
                self._held.append(message)

    def _watch_connections(self) -> None:
        """Be told when a Pub/Sub connection of the layer connects again (redis-py's connect
        callbacks, which it also uses to subscribe again)."""
        try:
            shards = self.layer._get_layer()._shards
            connections = [s._pubsub.connection for s in shards if s._pubsub is not None]
        except AttributeError:  # another layer: it has no reconnect to watch
            return
        for connection in connections:
            if connection is not None and id(connection) not in self._watched:
                connection.register_connect_callback(self._on_reconnect)
                self._watched.add(id(connection))

    def _on_reconnect(self, connection: Any) -> None:
        # called inside redis-py's connect (after the re-subscription was sent): only schedule
        if self._resync_task is not None and not self._resync_task.done():
            self._resync_again = True
            return
        self._held = []  # from now, live events wait for the replay
        self._resync_task = asyncio.get_running_loop().create_task(
            self._resync(), name="realtime-hub-resync"
        )

    async def _resync(self) -> None:
        failures = 0
        try:
            while True:
                self._resync_again = False
                try:
                    await self._replay_missed()
                except Exception:
                    # Redis went away again: releasing the held events now would move the
                    # topics' last ids past the gap for good, so try again for a while
                    failures += 1
                    if failures >= RESYNC_ATTEMPTS:
                        log.exception("realtime hub: gave up replaying after a reconnect")
                        return
                    log.warning("realtime hub: replay after a reconnect failed; retrying")
                    await asyncio.sleep(0.5)
                    self._resync_again = True
                if not self._resync_again:
                    return
        finally:
            held, self._held = self._held or [], None
            fresh = [m for m in held if "id" not in m or self._newer(m)]
            if fresh:
                self.dispatch(*fresh)

    def _newer(self, message: dict[str, Any]) -> bool:
        last = self.last_ids.get(message.get("topic", ""))
        return last is None or cursor_key(message["id"]) > cursor_key(last)

    async def _replay_missed(self) -> None:
        """Hand on what the log has after the last id of every followed topic, once the
        re-subscription is in effect (a marker came back), so nothing falls in between."""
        followed = list(self.listeners)
        if not followed:
            return
        await self._joined(followed[0])  # one SUBSCRIBE re-subscribed them all
        starts = {t: self.last_ids.get(t, "0-0") for t in followed}
        async with async_client().pipeline(transaction=False) as pipe:
            for topic, after in starts.items():
                pipe.xrange(stream_key(topic), "(" + after, "+", count=RESYNC_MAX_EVENTS)
            results = await pipe.execute()
        self.resyncs += 1
        replayed = 0
        for topic, entries in zip(starts, results, strict=True):
            if not entries or topic not in self.listeners:
                continue
            messages = [
                fanout_message(decode_entry(topic, eid, fields), sent_at=None)
                for eid, fields in entries
                if STREAM_FIELD in fields
            ]
            replayed += len(messages)
            self.dispatch(*messages)
        metrics.inc("hub_resyncs")
        if replayed:
            log.warning("realtime hub: replayed %d events missed while Redis reconnected", replayed)


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


def get_hub() -> Hub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
