"""Counting what the streams do, cheaply, and summing it across processes in Redis.

Every process (each daphne, each worker) counts in plain Python numbers: a delivery appends one
float, an ``inc`` adds to a dict entry; nothing on the hot path touches Redis or a Prometheus
metric object. Every ``FLUSH_SECONDS`` (a timer on the event loop in daphne; at the end of each
job, or an ``inc`` after a pause, in a worker) the process adds its counts to Redis:

- ``KEY``: the totals since the counters were created (counters and the latency histogram),
  summed over every process that ever ran, so a crashed process's counts stay counted.
- ``WINDOW_KEY``: the same counts per ``WINDOW_SECONDS`` slot, kept ``HISTORY_SECONDS``: what the
  staff page (``/realtime/``) turns into events per second and p50/p99 over the last minutes.
- ``PROCESS_KEY``: this process's open streams now, with a TTL of ``process_ttl()`` refreshed by
  every flush. A process that dies (SIGKILL, OOM) stops refreshing it and its streams drop out
  of the open-streams gauge once the TTL passes; opened minus closed would count them forever.

``realtime.exposition`` reads those keys at scrape time through a ``prometheus_client``
collector; ``render()`` is the ``/metrics`` body.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from django.conf import settings

from .redis import client

KEY = "intake:metrics"
WINDOW_KEY = "intake:metrics:w:"  # + the slot (unix time // WINDOW_SECONDS)
PROCESS_KEY = "intake:metrics:proc:"  # + host:pid
# Fine enough below 100 ms for the staff page's p50/p99 (the Prometheus histogram has them all).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)
FLUSH_SECONDS = 2.0
WINDOW_SECONDS = 5
HISTORY_SECONDS = 15 * 60

log = logging.getLogger(__name__)


def process_ttl() -> float:
    """Seconds after its last flush that a process's open streams stop counting."""
    return float(settings.REALTIME.get("METRICS_PROCESS_TTL", 15))


class Delivered(Protocol):
    type: str
    sent_at: float | None


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[tuple[str, str], float] = defaultdict(float)
        # Per event (by identity) sent since the last flush: the event and when each of its
        # deliveries went out. A delivery appends one float to a list: nothing the garbage
        # collector tracks, where a tuple per delivery (a thousand per fan-out, kept until the
        # flush) set off young collections in the middle of fan-outs and full ones after.
        self._sent: dict[int, tuple[Delivered, list[float]]] = {}
        self._unflushed = 0
        self._flush_scheduled = False
        self._last_flush = float("-inf")  # the first count is flushed soon
        self._open: defaultdict[str, float] = defaultdict(float)  # this process's open streams
        self._tick: asyncio.TimerHandle | None = None
        self._tick_loop: asyncio.AbstractEventLoop | None = None
        self.process = f"{socket.gethostname()}:{os.getpid()}"

    # ------------------------------------------------------------------ the hot path

    def inc(self, name: str, label: str = "", n: float = 1) -> None:
        with self._lock:
            self._counts[name, label] += n
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush_soon()

    def delivered_one(self, item: Delivered) -> None:
        """Note one event sent to one client, to count it and its publish-to-send latency.

        Called for every write to every connection, in the middle of a fan-out: it only notes
        the time (under the GIL, no lock); the counting is done at the flush, after the fan-out.
        """
        entry = self._sent.get(id(item))
        if entry is None:
            self._sent[id(item)] = (item, [time.time()])  # holds the item: its id stays its own
        else:
            entry[1].append(time.time())
        self._unflushed += 1
        if self._unflushed >= 20_000:
            self._unflushed = 0
            self.flush_soon()

    def delivered(self, items: Sequence[Delivered]) -> None:
        """Note events sent to one client in one write."""
        for item in items:
            self.delivered_one(item)

    # ------------------------------------------------------------------ flushing

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush_soon()

    def flush_soon(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker or a view: flush here
            self.flush()
            return
        self._keep_ticking(loop)
        # On an event loop, after what is already scheduled (a fan-out's writes), not before.
        self._flush_scheduled = True
        loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def _keep_ticking(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush every FLUSH_SECONDS on ``loop`` even when nothing is counted: the open-streams
        heartbeat (PROCESS_KEY's TTL) and the per-window counts must not wait for traffic."""
        if self._tick_loop is loop and self._tick is not None:
            return
        self._tick_loop = loop
        self._tick = loop.call_later(FLUSH_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        loop, self._tick = self._tick_loop, None
        self.flush()
        if loop is not None and not loop.is_closed():
            self._tick = loop.call_later(FLUSH_SECONDS, self._on_tick)

    def _count_sent(
        self,
        sent: dict[int, tuple[Delivered, list[float]]],
        counts: defaultdict[tuple[str, str], float],
    ) -> list[int]:
        hist = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket; the last is over the top
        # a copy taken at once (under the GIL): the loop's thread may still add to ``sent`` while
        # a /metrics view flushes from another thread
        for item, appended in list(sent.values()):
            times = appended[:]
            counts["events_delivered", item.type] += len(times)
            if item.sent_at:
                for now in times:
                    seconds = max(now - item.sent_at, 0.0)
                    hist[bisect_left(LATENCY_BUCKETS, seconds)] += 1
                    counts["latency_sum", ""] += seconds
        return hist

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
            sent, self._sent, self._unflushed = self._sent, {}, 0
            self._last_flush = time.monotonic()
        hist = self._count_sent(sent, counts)
        if any(hist):
            cumulative = 0
            for bound, n in zip(LATENCY_BUCKETS, hist, strict=False):
                cumulative += n
                counts["latency_bucket", str(bound)] = cumulative
            counts["latency_bucket", "+Inf"] = counts["latency_count", ""] = cumulative + hist[-1]
        for transport in ("sse", "websocket"):
            opened = counts.get(("streams_opened", transport), 0)
            closed = counts.get(("streams_closed", transport), 0)
            if opened or closed:
                self._open[transport] += opened - closed
        if not counts and not self._open:
            return  # a process that never served a stream and counted nothing since
        window = f"{WINDOW_KEY}{int(time.time()) // WINDOW_SECONDS}"
        try:
            pipe = client().pipeline(transaction=False)
            for (name, label), value in counts.items():
                pipe.hincrbyfloat(KEY, f"{name}|{label}", value)
                pipe.hincrbyfloat(window, f"{name}|{label}", value)
            if counts:
                pipe.expire(window, HISTORY_SECONDS + WINDOW_SECONDS)
            if self._open:
                key = PROCESS_KEY + self.process
                pipe.hset(key, mapping={t: max(v, 0) for t, v in self._open.items()})
                pipe.expire(key, max(1, round(process_ttl())))
            pipe.execute()
        except Exception:  # metrics never break delivery; the counts are lost, not the events
            log.debug("metrics flush failed", exc_info=True)

    # ------------------------------------------------------------------ process lifetime

    def _forget(self) -> None:
        """In a forked child (an RQ work horse): start from nothing; the parent flushes its own
        counts, and the child is a process of its own for the open-streams gauge."""
        self._lock = threading.Lock()
        self._counts = defaultdict(float)
        self._sent, self._unflushed = {}, 0
        self._open = defaultdict(float)
        self._tick = self._tick_loop = None
        self._flush_scheduled = False
        self.process = f"{socket.gethostname()}:{os.getpid()}"

    def close(self) -> None:
        """On a clean exit: flush, and take this process's streams out of the gauge at once."""
        self.flush()
        if self._open:
            try:
                client().delete(PROCESS_KEY + self.process)
            except Exception:
                log.debug("metrics: could not remove this process's gauge", exc_info=True)


metrics = Metrics()
os.register_at_fork(after_in_child=metrics._forget)
atexit.register(metrics.close)


def render() -> str:
    """The Prometheus text exposition of the counts summed over every process."""
    from .exposition import render_latest

    return render_latest()
