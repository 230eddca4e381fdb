"""Counters and a latency histogram, summed across processes in Redis for ``/metrics``.

Each process counts in memory (a delivery must not cost a Redis round trip) and adds its counts
to one Redis hash every few seconds; ``/metrics`` renders that hash in Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from .redis import client

KEY = "intake:metrics"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
FLUSH_SECONDS = 2.0

HELP = {
    "streams_opened": ("counter", "Streams opened, by transport"),
    "streams_closed": ("counter", "Streams closed, by transport"),
    "events_published": ("counter", "Events published, by type"),
    "events_publish_failed": ("counter", "Events not published (Redis failed), by type"),
    "events_delivered": ("counter", "Events sent to clients, by type"),
    "events_received_by_hub": ("counter", "Events the per-process hubs received, by type"),
    "events_coalesced": ("counter", "Progress/status/heartbeat events replaced by a newer one"),
    "events_dropped": ("counter", "Events not delivered to a client that was reset"),
    "replays": ("counter", "Stream (re)connections that replayed the log"),
    "resets": ("counter", "Reset events sent (cursor too old, or client too slow)"),
    "worker_lost_jobs": ("counter", "Jobs whose worker was lost (resumed or failed)"),
}


class Delivered(Protocol):
    type: str
    sent_at: float | None


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: defaultdict[str, float] = defaultdict(float)
        # Per event (by identity) sent since the last flush: the event and when each of its
        # deliveries went out. A delivery appends one float to a list: nothing the garbage
        # collector tracks, where a tuple per delivery (a thousand per fan-out, kept until the
        # flush) set off young collections in the middle of fan-outs and full ones after.
        self._sent: dict[int, tuple[Delivered, list[float]]] = {}
        self._unflushed = 0
        self._flush_scheduled = False
        self._last_flush = time.monotonic()

    def inc(self, name: str, label: str = "", n: float = 1) -> None:
        with self._lock:
            self._counts[f"{name}|{label}"] += n
        self.maybe_flush()

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

    def _count_sent(
        self, sent: dict[int, tuple[Delivered, list[float]]], counts: defaultdict[str, float]
    ) -> list[int]:
        hist = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket; the last is over the top
        # a copy taken at once (under the GIL): the loop's thread may still add to ``sent`` while
        # a /metrics view flushes from another thread
        for item, appended in list(sent.values()):
            times = appended[:]
            counts["events_delivered|" + item.type] += len(times)
            if item.sent_at:
                for now in times:
                    seconds = max(now - item.sent_at, 0.0)
                    hist[bisect_left(LATENCY_BUCKETS, seconds)] += 1
                    counts["latency_sum|"] += seconds
        return hist

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
        # On an event loop, after what is already scheduled (a fan-out's writes), not before.
        self._flush_scheduled = True
        loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

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
                counts[f"latency_bucket|{bound}"] = cumulative
            counts["latency_bucket|+Inf"] = counts["latency_count|"] = cumulative + hist[-1]
        if not counts:
            return
        try:
            pipe = client().pipeline(transaction=False)
            for field, value in counts.items():
                pipe.hincrbyfloat(KEY, field, value)
            pipe.execute()
        except Exception:  # metrics never break delivery; the counts are lost, not the events
            logging.getLogger(__name__).debug("metrics flush failed", exc_info=True)


metrics = Metrics()


def render() -> str:
    """Prometheus text exposition of the summed counters."""
    metrics.flush()
    raw = {k.decode(): float(v) for k, v in client().hgetall(KEY).items()}
    by_name: defaultdict[str, dict[str, float]] = defaultdict(dict)
    for field, value in raw.items():
        name, _, label = field.partition("|")
        by_name[name][label] = value
    lines: list[str] = []
    opened = by_name.get("streams_opened", {})
    closed = by_name.get("streams_closed", {})
    lines += [
        "# HELP intake_open_streams Open streams, by transport",
        "# TYPE intake_open_streams gauge",
    ]
    for transport in sorted(set(opened) | {"sse", "websocket"}):
        value = opened.get(transport, 0) - closed.get(transport, 0)
        lines.append(f'intake_open_streams{{transport="{transport}"}} {value:g}')
    for name, (kind, text) in HELP.items():
        lines += [f"# HELP intake_{name}_total {text}", f"# TYPE intake_{name}_total {kind}"]
        for label, value in sorted(by_name.get(name, {}).items()):
            tag = f'{{label="{label}"}}' if label else ""
            lines.append(f"intake_{name}_total{tag} {value:g}")
    lines += [
        "# HELP intake_publish_to_send_seconds Publish-to-send latency of delivered events",
        "# TYPE intake_publish_to_send_seconds histogram",
    ]
    buckets = by_name.get("latency_bucket", {})
    for bound in (*[str(b) for b in LATENCY_BUCKETS], "+Inf"):
        lines.append(
            f'intake_publish_to_send_seconds_bucket{{le="{bound}"}} {buckets.get(bound, 0):g}'
        )
    lines.append(
        f"intake_publish_to_send_seconds_sum {by_name.get('latency_sum', {}).get('', 0):g}"
    )
    lines.append(
        f"intake_publish_to_send_seconds_count {by_name.get('latency_count', {}).get('', 0):g}"
    )
    return "\n".join(lines) + "\n"
