"""The one consumer core behind SSE, WebSocket and (for the cursor) polling.

A ``ClientStream`` is one connection's view: the topics it follows, a cursor per topic and a
bounded outgoing queue. Subscribing is gap-free and duplicate-free: it joins the live feed
first (buffering), replays the log after the client's cursor, then releases the buffered live
events that are newer than the last replayed one. A replay delivers every event in the log
after the cursor, exactly once. Only while a client's socket is backed up (its transport sets
``backed_up``) are its live progress, status and heartbeat events coalesced (the newest per
topic wins, and moves to the back so ids stay in order; each replaced one is counted); stage
and terminal events are never dropped: a client that falls that far behind gets ``reset`` and
is closed so that it resyncs from the log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async

from . import events, log, topics
from .hub import get_hub
from .metrics import metrics

SnapshotFn = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass(slots=True)
class Outgoing:
    topic: str
    type: str
    id: str | None
    data: str  # the envelope as JSON, encoded once
    sent_at: float | None = None
    job_id: str | None = None
    frame: bytes | None = None  # the SSE frame, shared by every connection of the process
    chunk: bytes | None = None  # the same as a chunk of a chunked HTTP body
    ws: bytes | None = None  # the envelope as a WebSocket text frame
    key: tuple[int, int] | None = None  # the id as a cursor (log.cursor_key)
    final: bool = False  # a snapshot or reset that shows its topic has already ended
    replayed: bool = False  # read from the log for one stream: never coalesced, not counted
    ends: bool | None = None  # ``terminal``, worked out once per process (not per client)

    def sse(self) -> bytes:
        if self.frame is None:
            head = f"id: {self.id}\n" if self.id else ""
            self.frame = f"{head}event: {self.type}\ndata: {self.data}\n\n".encode()
        return self.frame

    def sse_chunk(self) -> bytes:
        """The SSE frame as one chunk of a chunked HTTP body, also built once per process."""
        if self.chunk is None:
            frame = self.sse()
            self.chunk = b"%x\r\n%b\r\n" % (len(frame), frame)
        return self.chunk

    def ws_frame(self) -> bytes:
        """The envelope as a whole WebSocket text frame, built once per process."""
        if self.ws is None:
            from .daphne_compat import text_frame

            self.ws = text_frame(self.data.encode())
        return self.ws

    @property
    def terminal(self) -> bool:
        """Whether a stream on this event's topic alone closes after it: the topic kind's
        terminal events (``realtime.topics``), or a snapshot that shows the end."""
        ends = self.ends
        if ends is None:
            ends = self.ends = self.final or self.type in topics.terminal_events_of(self.topic)
        return ends


async def state_shows_end(topic: str, event_job_id: str | None, snapshot: SnapshotFn) -> bool:
    """Whether nothing more will come on ``topic`` after an event that may end it (of the job
    ``event_job_id``, if any). A topic may begin again: a BOM's next run is queued before its
    first event. So its current state must say so too (a kind without ``ended`` is taken at
    its terminal event), for the same job: read after the event, a newer job means a run
    started since (even one that has ended too)."""
    if not topics.ends_by_state(topic):
        return True
    body = await snapshot(topic)
    if body is None:  # the object is gone
        return True
    current = body.get("job")
    if event_job_id and isinstance(current, dict) and str(current.get("id")) != event_job_id:
        return False
    return topics.ended(topic, body)


def job_id_of(env: dict[str, Any]) -> str | None:
    """The id of the job an event envelope is about, if any."""
    job = env.get("job")
    return str(job["id"]) if isinstance(job, dict) and job.get("id") else None


def outgoing_from_envelope(env: dict[str, Any]) -> Outgoing:
    return Outgoing(
        topic=env["topic"],
        type=env["type"],
        id=env.get("id"),
        data=events.dumps(env),
        job_id=job_id_of(env),
        final=env["type"] in ("snapshot", "reset") and topics.ended(env["topic"], env),
    )


def outgoing_from_message(message: dict[str, Any]) -> Outgoing:
    # The hub hands every local connection the same message dict: cache the object on it so
    # the SSE frame is built once per process, not once per client.
    cached = message.get("_outgoing")
    if cached is None:
        cached = message["_outgoing"] = Outgoing(
            topic=message["topic"],
            type=message["event_type"],
            id=message["id"],
            data=message["json"],
            sent_at=message.get("sent_at"),
            job_id=message.get("job_id"),
        )
    return cached


class StreamClosed(Exception):
    pass


@dataclass(eq=False)  # compared and hashed by identity: streams live in sets
class ClientStream:
    """One connection's subscriptions and outgoing queue (transport-agnostic)."""

    max_queue: int = 1000
    job_filter: set[str] | None = None  # narrow an organization feed to these jobs
    queue: OrderedDict[int, Outgoing] = field(default_factory=OrderedDict)
    cursors: dict[str, tuple[int, int]] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    overflowed: bool = False
    # set by the transport while the client's socket has not taken what was written: only then
    # do live progress events replace older ones still queued
    backed_up: bool = False
    on_close: Callable[[], Awaitable[None]] | None = None
    _seq: int = 0
    _replayed: int = 0  # replayed events queued: bounded by the replay, not by max_queue
    _coalesce: dict[tuple[str, str], int] = field(default_factory=dict)
    _buffers: dict[str, list[Outgoing]] = field(default_factory=dict)
    _waiter: asyncio.Future[None] | None = None  # set while the sender waits in next()
    _timer: asyncio.TimerHandle | None = None
    # Writes an event at once, in the caller's turn of the loop, or returns False. Used while
    # the sender is idle and nothing is queued (a client that keeps up): the hub's one pass
    # over the listeners then reaches every such client, with no task woken per connection.
    direct: Callable[[Sequence[Outgoing]], bool] | None = None
    ended: bool = False  # the stream has sent its last event; nothing more goes out

    # ------------------------------------------------------------------ intake

    def _listener(self, messages: Sequence[dict[str, Any]]) -> None:
        """The hub's events for one of this stream's topics: usually one, more when several
        arrived together (they then go out in one write)."""
        if len(messages) == 1:
            self.offer(outgoing_from_message(messages[0]))
            return
        admitted = [i for i in map(outgoing_from_message, messages) if self._admit(i)]
        if len(admitted) > 1 and self._idle() and self.direct(admitted):  # type: ignore[misc]
            return
        for item in admitted:
            self.enqueue(item)

    def offer(self, item: Outgoing) -> None:
        if self._admit(item):
            self.enqueue(item)

    def _admit(self, item: Outgoing) -> bool:
        """Whether ``item`` is for this stream and new to it (buffered while it subscribes)."""
        if self.job_filter is not None and item.job_id not in self.job_filter:
            return False
        buffer = self._buffers.get(item.topic)
        if buffer is not None:
            buffer.append(item)
            return False
        if item.id is not None:
            key = item.key
            if key is None:
                key = item.key = log.cursor_key(item.id)  # once per process, not per client
            if key <= self.cursors.get(item.topic, (-1, -1)):
                return False  # already replayed or sent
            self.cursors[item.topic] = key
        return True

    def _idle(self) -> bool:
        """Whether an event may be written at once, by ``direct``."""
        return (
            self.direct is not None
            and self._waiter is not None  # the sender is parked: no write of its in flight
            and not self.queue  # and nothing is waiting to go before this
            and not self.ended
            and not self.overflowed
        )

    def enqueue(self, item: Outgoing) -> None:
        if self.ended:
            return
        if self.overflowed:
            metrics.inc("events_dropped", item.type)
            return
        if self._idle() and self.direct((item,)):  # type: ignore[misc]
            return
        self._seq += 1
        if item.replayed:
            # exact: every replayed event goes out, however many (the replay is bounded)
            self._replayed += 1
            self.queue[self._seq] = item
            self.wake()
            return
        ckey = (item.topic, item.type)
        coalescable = events.coalescable(item.type)
        if coalescable and self.backed_up:
            old = self._coalesce.pop(ckey, None)
            if old is not None and self.queue.pop(old, None) is not None:
                metrics.inc("events_coalesced", item.type)
        if len(self.queue) - self._replayed >= self.max_queue:
            if coalescable:
                metrics.inc("events_dropped", item.type)
                return
            # too slow even for the events that are never dropped: resync from the log
            self.overflowed = True
            metrics.inc("events_dropped", item.type)
            self.wake()
            return
        self.queue[self._seq] = item
        if coalescable:
            self._coalesce[ckey] = self._seq
        self.wake()

    def end(self) -> None:
        """Send nothing more (the stream's last event is out); the sender closes it."""
        self.ended = True
        self.wake()

    def wake(self) -> None:
        """Let a sender waiting in ``next()`` go on (new events, overflow or a disconnect)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ subscribe

    async def subscribe(
        self, topic: str, cursor: str | None, snapshot: SnapshotFn, *, initial: bool = False
    ) -> None:
        """Follow ``topic`` from ``cursor``: live feed first, then the log, then the buffer.

        With no cursor and ``initial``, the client first gets the current state as a
        ``snapshot`` event whose id is the log's newest, so it can resume from there.
        """
        if topic in self.topics:
            return
        self.topics.add(topic)
        self._buffers[topic] = []
        await get_hub().subscribe(topic, self._listener)
        try:
            if cursor:
                replay = await database_sync_to_async(log.read_after)(topic, cursor)
                metrics.inc("replays", topic.split(":")[0])
                if replay.gap:
                    await self._reset(topic, snapshot, reason="cursor_expired")
                elif self._replayed + len(replay.events) >= log.REPLAY_MAX:
                    # a read of REPLAY_MAX events may have stopped short of the rest (a job's
                    # end), and a connection's unsent replays are bounded, as live events are
                    # (a client that resubscribes and never reads)
                    await self._reset(topic, snapshot, reason="replay_limit")
                else:
                    self.cursors[topic] = log.cursor_key(cursor)
                    items = [outgoing_from_envelope(env) for env in replay.events]
                    # a replay that ends with another kind's end (a BOM run's
                    # enrichment.completed after job.completed on job:<id>) closes the stream
                    # when the state agrees; the state is asked only then, never mid-run
                    last = items[-1] if items else None
                    if (
                        last is not None
                        and not any(item.terminal for item in items)
                        and topics.may_end(topic, last.type)
                        and await state_shows_end(topic, last.job_id, snapshot)
                    ):
                        last.final, last.ends = True, None
                    for item in items:
                        self.offer_replayed(item)
            elif initial:
                await self._reset(topic, snapshot, reason=None)
        finally:
            buffered = self._buffers.pop(topic, [])
        for item in buffered:
            self.offer(item)

    def offer_replayed(self, item: Outgoing) -> None:
        if item.id:
            self.cursors[item.topic] = log.cursor_key(item.id)
        if self.job_filter is not None and item.job_id not in self.job_filter:
            return
        item.replayed = True
        self.enqueue(item)

    async def _reset(self, topic: str, snapshot: SnapshotFn, *, reason: str | None) -> None:
        newest = await database_sync_to_async(log.last_id)(topic)
        if self.job_filter is not None:
            # a feed narrowed to some jobs (perhaps by a token for those jobs only) gets their
            # states, never the organization's summary
            jobs = [await snapshot(events.job_topic(j)) for j in sorted(self.job_filter)]
            state: dict[str, Any] | None = {"jobs": [s["job"] for s in jobs if s]}
        else:
            state = await snapshot(topic)
        body: dict[str, Any] = dict(state or {})
        if reason:
            body["reason"] = reason
            metrics.inc("resets", reason)
        env = events.envelope(
            newest or "", "reset" if reason else "snapshot", topic, events.now_iso(), body
        )
        if not newest:
            env.pop("id")
        item = outgoing_from_envelope(env)
        if newest:
            self.cursors[topic] = log.cursor_key(newest)
        self.enqueue(item)

    async def unsubscribe(self, topic: str) -> None:
        if await self._leave(topic):
            self._drop_queued(topic)

    async def _leave(self, topic: str) -> bool:
        if topic not in self.topics:
            return False
        self.topics.discard(topic)
        await get_hub().unsubscribe(topic, self._listener)
        return True

    def _drop_queued(self, topic: str) -> None:
        """Forget ``topic``'s unsent events: the client no longer wants them, and a client that
        subscribes and unsubscribes without reading must not pile them up."""
        for seq in [seq for seq, item in self.queue.items() if item.topic == topic]:
            item = self.queue.pop(seq)
            if item.replayed:
                self._replayed -= 1
            elif self._coalesce.get((item.topic, item.type)) == seq:
                del self._coalesce[(item.topic, item.type)]
        self.cursors.pop(topic, None)

    async def close(self) -> None:
        self.direct = None
        self.stop_timer()
        for topic in list(self.topics):
            await self._leave(topic)  # what is queued stays: the stream is done with it
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            await on_close()

    # ------------------------------------------------------------------ output

    async def next(self, timeout: float) -> Outgoing | None:
        """The next event to send, or None after ``timeout`` seconds of nothing."""
        return await self.next_until(asyncio.get_running_loop().time() + timeout)

    async def next_until(self, deadline: float) -> Outgoing | None:
        """The next event to send, or None once the loop's clock reaches ``deadline``.

        One bare future per wait, woken by ``wake()``, and one timer per deadline, kept across
        waits: ``asyncio.wait_for`` on an Event created a task and a timer per wait, and with a
        thousand connections that was most of the fan-out's cost.
        """
        if not self.queue and not self.overflowed and not self.ended:
            loop = asyncio.get_running_loop()
            timer = self._timer
            if timer is None or timer.when() != deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._expire)
            self._waiter = waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
            if not self.queue and not self.overflowed:
                return None
        return self.next_nowait()

    def _expire(self) -> None:
        self._timer = None
        self.wake()

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def next_nowait(self) -> Outgoing | None:
        """The next queued event, or None when the queue is empty."""
        if self.overflowed:
            raise StreamClosed("client too slow")
        if not self.queue:
            return None
        seq, item = self.queue.popitem(last=False)
        if item.replayed:
            self._replayed -= 1
            return item
        key = (item.topic, item.type)
        if self._coalesce.get(key) == seq:
            del self._coalesce[key]
        return item


def heartbeat() -> Outgoing:
    return Outgoing(
        topic="",
        type="heartbeat",
        id=None,
        data=json.dumps({"timestamp": int(time.time() * 1000)}),
    )
