"""Reading the counts that ``realtime.metrics`` sums in Redis: the Prometheus exposition
(``/metrics``, through a ``prometheus_client`` collector read at scrape time) and the figures the
staff page (``/realtime/``) shows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .metrics import (
    HISTORY_SECONDS,
    KEY,
    LATENCY_BUCKETS,
    PROCESS_KEY,
    WINDOW_KEY,
    WINDOW_SECONDS,
    metrics,
)
from .redis import client

# name counted with ``metrics.inc`` -> (help, the label's name, or None for no label)
COUNTERS: dict[str, tuple[str, str | None]] = {
    "streams_opened": ("Streams opened", "transport"),
    "streams_closed": ("Streams closed", "transport"),
    "events_published": ("Events published (one per topic)", "type"),
    "events_publish_failed": ("Events not published (Redis failed)", "type"),
    "events_delivered": ("Events sent to clients", "type"),
    "events_received_by_hub": ("Events the per-process hubs received", "type"),
    "events_coalesced": ("Progress/status/heartbeat events replaced by a newer one", "type"),
    "events_dropped": ("Events not delivered to a client that was reset", "type"),
    "replays": ("Stream (re)connections that replayed the log", "kind"),
    "resets": ("Reset events sent (cursor too old, or client too slow)", "reason"),
    "hub_resyncs": ("Replays of missed events after a Pub/Sub reconnect, per process", None),
    "worker_lost_jobs": ("Jobs whose worker was lost (resumed or failed)", None),
    "orphaned_jobs_requeued": ("Queued jobs that RQ no longer held, queued again", None),
}
INTERNAL = {"latency_bucket", "latency_sum", "latency_count"}
TRANSPORTS = ("sse", "websocket")


def _parse(raw: dict[bytes, bytes]) -> defaultdict[str, dict[str, float]]:
    by_name: defaultdict[str, dict[str, float]] = defaultdict(dict)
    for field, value in raw.items():
        name, _, label = field.decode().partition("|")
        by_name[name][label] = float(value)
    return by_name


def open_streams() -> tuple[dict[str, float], int]:
    """Open streams by transport, summed over the processes whose heartbeat has not expired,
    and how many such processes there are."""
    r = client()
    keys = list(r.scan_iter(match=PROCESS_KEY + "*", count=100))
    totals = dict.fromkeys(TRANSPORTS, 0.0)
    if not keys:
        return totals, 0
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    live = 0
    for fields in pipe.execute():
        if not fields:
            continue  # expired between the scan and the read
        live += 1
        for transport, value in fields.items():
            name = transport.decode()
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals, live


class RedisTotals(Collector):
    """Yields, at each scrape, the counts every process has flushed to Redis (this process's
    unflushed ones first)."""

    def collect(self) -> Iterator[Metric]:
        metrics.flush()
        by_name = _parse(client().hgetall(KEY))
        streams, processes = open_streams()
        gauge = GaugeMetricFamily(
            "intake_open_streams", "Open streams, by transport", labels=["transport"]
        )
        for transport, value in sorted(streams.items()):
            gauge.add_metric([transport], value)
        yield gauge
        yield GaugeMetricFamily(
            "intake_stream_processes",
            "Processes serving streams whose metrics heartbeat has not expired",
            value=processes,
        )
        names = list(COUNTERS) + sorted(set(by_name) - set(COUNTERS) - INTERNAL)
        for name in names:
            text, label = COUNTERS.get(name, (name.replace("_", " "), "label"))
            values = by_name.get(name, {})
            if label is None:
                family = CounterMetricFamily(f"intake_{name}", text, value=sum(values.values()))
            else:
                family = CounterMetricFamily(f"intake_{name}", text, labels=[label])
                for value_label, value in sorted(values.items()):
                    family.add_metric([value_label], value)
            yield family
        buckets = by_name.get("latency_bucket", {})
        yield HistogramMetricFamily(
            "intake_publish_to_send_seconds",
            "Publish-to-send latency of delivered events",
            buckets=[(str(b), buckets.get(str(b), 0.0)) for b in LATENCY_BUCKETS]
            + [("+Inf", buckets.get("+Inf", 0.0))],
            sum_value=by_name.get("latency_sum", {}).get("", 0.0),
        )


registry = CollectorRegistry(auto_describe=False)
registry.register(RedisTotals())


def render_latest() -> str:
    return generate_latest(registry).decode()


# ---------------------------------------------------------------------- the staff page


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram [(upper bound, count), …, (inf, total)],
    interpolated within its bucket as Prometheus' ``histogram_quantile`` does."""
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # past the last finite bound: the most that can be said
            width = count - lower_count
            share = (rank - lower_count) / width if width else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _window_quantiles(values: dict[str, dict[str, float]]) -> tuple[float | None, float | None]:
    buckets = values.get("latency_bucket", {})
    cumulative = [(b, buckets.get(str(b), 0.0)) for b in LATENCY_BUCKETS]
    cumulative.append((float("inf"), buckets.get("+Inf", 0.0)))
    return quantile(0.5, cumulative), quantile(0.99, cumulative)


def _windows(seconds: int) -> list[tuple[int, defaultdict[str, dict[str, float]]]]:
    """The per-slot counts over the last ``seconds``, oldest first, without the slot still
    being filled."""
    seconds = min(seconds, HISTORY_SECONDS)
    now_slot = int(time.time()) // WINDOW_SECONDS
    slots = list(range(now_slot - seconds // WINDOW_SECONDS, now_slot))
    pipe = client().pipeline(transaction=False)
    for slot in slots:
        pipe.hgetall(f"{WINDOW_KEY}{slot}")
    return [(slot, _parse(raw)) for slot, raw in zip(slots, pipe.execute(), strict=True)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _point(slot: int, values: dict[str, dict[str, float]]) -> dict[str, Any]:
    p50, p99 = _window_quantiles(values)
    return {
        "t": slot * WINDOW_SECONDS,
        "delivered_per_s": round(
            sum(values.get("events_delivered", {}).values()) / WINDOW_SECONDS, 1
        ),
        "published_per_s": round(
            sum(values.get("events_published", {}).values()) / WINDOW_SECONDS, 1
        ),
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
    }


def series(seconds: int = 600) -> list[dict[str, Any]]:
    """Per ``WINDOW_SECONDS`` slot over the last ``seconds`` (oldest first): deliveries and
    publishes per second, and publish-to-send p50/p99 in ms (None: nothing delivered)."""
    return [_point(slot, values) for slot, values in _windows(seconds)]


def overview(seconds: int = 600, recent_seconds: int = 60) -> dict[str, Any]:
    """What the staff page shows: open streams now; events per second over the last
    ``recent_seconds``; publish-to-send p50/p99 over the last ``seconds`` and per slot; and
    the totals that say something went wrong (coalesced, resets, lost workers)."""
    metrics.flush()
    totals = _parse(client().hgetall(KEY))
    streams, processes = open_streams()
    windows = _windows(seconds)
    points = [_point(slot, values) for slot, values in windows]
    recent = points[-(recent_seconds // WINDOW_SECONDS) :]
    merged: dict[str, float] = defaultdict(float)
    for _, values in windows:
        for bound, count in values.get("latency_bucket", {}).items():
            merged[bound] += count
    p50, p99 = _window_quantiles({"latency_bucket": merged})

    def total(name: str) -> float:
        return sum(totals.get(name, {}).values())

    return {
        "generated_at": round(time.time(), 3),
        "window_seconds": WINDOW_SECONDS,
        "history_seconds": len(points) * WINDOW_SECONDS,
        "open_streams": streams,
        "open_streams_total": sum(streams.values()),
        "processes": processes,
        "delivered_per_s": _mean(p["delivered_per_s"] for p in recent),
        "published_per_s": _mean(p["published_per_s"] for p in recent),
        "p50_ms": _ms(p50),
        "p99_ms": _ms(p99),
        "delivered_total": total("events_delivered"),
        "published_total": total("events_published"),
        "coalesced": total("events_coalesced"),
        "dropped": total("events_dropped"),
        "resets": {k or "-": v for k, v in sorted(totals.get("resets", {}).items())},
        "resets_total": total("resets"),
        "lost_workers": total("worker_lost_jobs"),
        "series": points,
    }


def _mean(values: Iterator[float]) -> float:
    found = list(values)
    return round(sum(found) / len(found), 1) if found else 0.0
