"""What the metrics cost on a stream's hot path: ``inc`` and ``delivered_one`` per call, and the
flush that counts a fan-out's deliveries (once every couple of seconds, after the fan-out).

    python -m config.devservers exec -- .venv/bin/python bench/metrics_cost.py
    (options: --clients 1000 --events 50 --rounds 7)

Each round notes ``--events`` events delivered to ``--clients`` connections (as a hub's passes
do), plus one ``inc`` per event (the hub's received counter), then flushes to Redis. Prints the
median over the rounds, in nanoseconds per call (and milliseconds per flush).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from realtime.metrics import Metrics  # noqa: E402
from realtime.streams import Outgoing  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, {platform.python_version()}")
    m = Metrics()
    m.flush_soon = lambda: None  # flushed below, timed on its own
    m.maybe_flush = lambda: None
    inc_ns, deliver_ns, flush_ms = [], [], []
    for _ in range(args.rounds):
        items = [
            Outgoing(topic="job:x", type="job.progress", id=None, data="{}", sent_at=time.time())
            for _ in range(args.events)
        ]
        t0 = time.perf_counter_ns()
        for item in items:
            m.inc("events_received_by_hub", item.type)
        inc_ns.append((time.perf_counter_ns() - t0) / args.events)
        t0 = time.perf_counter_ns()
        for item in items:
            for _ in range(args.clients):
                m.delivered_one(item)
        deliver_ns.append((time.perf_counter_ns() - t0) / (args.events * args.clients))
        t0 = time.perf_counter_ns()
        m.flush()
        flush_ms.append((time.perf_counter_ns() - t0) / 1e6)
    print("\n| per call | median | best |")
    print("| --- | ---: | ---: |")
    print(f"| inc, ns | {statistics.median(inc_ns):.0f} | {min(inc_ns):.0f} |")
    print(f"| delivered_one, ns | {statistics.median(deliver_ns):.0f} | {min(deliver_ns):.0f} |")
    print(
        f"| flush of {args.events * args.clients:,} deliveries, ms | "
        f"{statistics.median(flush_ms):.1f} | {min(flush_ms):.1f} |"
    )


if __name__ == "__main__":
    main()
