"""The dashboard scenario of ``bench/stream_latency.py`` (``--scenario dashboard``), and the
background load and daphne processes both scenarios use.

A thousand people watch the organization's dashboard: each holds the activity feed with
``summary=1`` (``/api/v1/realtime/events?summary=1``, what the dashboard page opens) while four
imports run at once, each in its own ``rqworker --burst``. The clients are spread over one or
more daphne processes sharing Redis. Per run it measures, for the job events the clients got
(from the envelope's ``ts`` to the kernel's receive timestamp, as the job scenario does):
p50/p99/max; stage and terminal events lost (every one in the organization's log must reach
every client); deliveries per second per daphne process; and each daphne's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
from loopback_capture import LoopbackCapture, redate

ROOT = Path(__file__).resolve().parent.parent
STAGE_OR_TERMINAL = {"job.started", "job.stage", "job.completed", "job.failed", "job.cancelled"}
IMPORTS = 4


def ts_seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@contextlib.contextmanager
def background_load(n: int) -> Iterator[list[int]]:
    """``n`` busy processes at normal priority (nice 0, SCHED_OTHER) for as long as the block
    runs: what PostgreSQL vacuuming after a big import, or anything else sharing the machine,
    does to the CPU."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, 0),
        )
        for _ in range(n)
    ]
    try:
        time.sleep(0.2 if n else 0)  # running before the measured part starts
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def start_daphnes(
    n: int, env: dict, app: str, nice: int | None
) -> list[tuple[subprocess.Popen, int]]:
    """``n`` daphne processes on ports of their own, sharing Redis and PostgreSQL, with
    ``DAPHNE_NICE=nice`` if given (daphne applies it at start-up: realtime.daphne_compat)."""
    from config.devservers import free_port, wait_for_port

    if nice is not None:
        env = {**env, "DAPHNE_NICE": str(nice)}
    out = []
    for _ in range(n):
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                # a thousand clients connect at once: a listen backlog of 50 (Twisted's default)
                # would refuse some of them
                "-e",
                f"tcp:port={port}:interface=127.0.0.1:backlog=2048",
                app,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        out.append((proc, port))
    for proc, port in out:
        wait_for_port(port)
        if nice is not None and psutil.Process(proc.pid).nice() != nice:
            raise RuntimeError(f"daphne did not take DAPHNE_NICE={nice} (needs CAP_SYS_NICE)")
    return out


async def burst_worker(env: dict) -> asyncio.subprocess.Process:
    """A real ``rqworker --burst`` on the default queue: runs what is queued, then exits."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "rqworker",
        "default",
        "--burst",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def stop_daphnes(daphnes: list[tuple[subprocess.Popen, int]]) -> None:
    for proc, _ in daphnes:
        proc.terminate()
    for proc, _ in daphnes:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _start_feed_clients(
    n: int, procs: int, ports: list[int], token: str, sched: str
) -> list[asyncio.subprocess.Process]:
    shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    started = []
    offset = 0
    for share in shares:
        if not share:
            continue
        # rotate the ports so that each client process spreads its share over every daphne
        rotated = ports[offset % len(ports) :] + ports[: offset % len(ports)]
        offset += share
        started.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "bench" / "stream_clients.py"),
                "feed",
                ",".join(map(str, rotated)),
                str(IMPORTS),
                token,
                str(share),
                sched,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 30,
            )
        )
    for proc in started:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 180)
        if line.strip() != b"ready":
            raise RuntimeError(f"a client process did not connect its clients: {line!r}")
    return started


async def dashboard_run(
    *,
    n: int,
    daphnes: list[tuple[subprocess.Popen, int]],
    org,
    token: str,
    path: Path,
    batch_size: int,
    env: dict,
    client_procs: int,
    client_sched: str,
    load: int,
    per_event_lines: bool = False,
) -> dict:
    from django.core.files import File

    from imports.services import import_job_create
    from realtime.events import org_topic
    from realtime.log import last_id, read_after

    def create_jobs() -> list[str]:
        ids = []
        for _ in range(IMPORTS):
            with path.open("rb") as fh:
                job = import_job_create(
                    organization=org,
                    user=None,
                    upload=File(fh, name=path.name),
                    batch_size=batch_size,
                )
            ids.append(str(job.id))
        return ids

    job_ids = set(await asyncio.to_thread(create_jobs))
    ports = [port for _, port in daphnes]
    capture = LoopbackCapture.open(ports)  # before the clients connect: their whole streams
    clients = await _start_feed_clients(n, min(client_procs, n), ports, token, client_sched)
    await asyncio.sleep(1.0)  # subscriptions settle
    topic = org_topic(org.id)
    cursor = await asyncio.to_thread(last_id, topic)
    watched = {port: psutil.Process(proc.pid) for proc, port in daphnes}
    with background_load(load):
        cpu0 = {port: sum(p.cpu_times()[:2]) for port, p in watched.items()}
        t0 = time.monotonic()
        workers = [await burst_worker(env) for _ in range(IMPORTS)]
        for worker in workers:
            await worker.wait()
        per_client: list[list] = []
        for proc in clients:
            assert proc.stdout is not None
            per_client.extend(json.loads(await proc.stdout.readline()))
            await proc.wait()
        elapsed = time.monotonic() - t0
        cpu = {port: (sum(p.cpu_times()[:2]) - cpu0[port]) / elapsed for port, p in watched.items()}
    redated, arrival = await asyncio.to_thread(
        redate, [((port, local), events) for port, local, events in per_client], capture
    )
    per_client = [(port, events) for (port, _, _), events in zip(per_client, redated, strict=True)]

    logged = await asyncio.to_thread(lambda: read_after(topic, cursor).events)
    ours = [e for e in logged if str((e.get("job") or {}).get("id")) in job_ids]
    must = {e["id"] for e in ours if e["type"] in STAGE_OR_TERMINAL}
    first_ts = min(ts_seconds(e["ts"]) for e in ours) if ours else time.time()
    last_ts = max(ts_seconds(e["ts"]) for e in ours) if ours else time.time()
    latencies: list[float] = []
    per_event: dict[str, list[float]] = {}
    lost = 0
    delivered = dict.fromkeys(ports, 0)
    clients_done = 0
    kinds = {e["id"]: e["type"] for e in ours}
    lost_types: dict[str, int] = {}
    for port, events in per_client:
        ids = {e[1] for e in events}
        lost += len(must - ids)
        for missing in must - ids:
            lost_types[kinds[missing]] = lost_types.get(kinds[missing], 0) + 1
        clients_done += must <= ids
        for kind, _id, ts, arrived, _read in events:
            if kind and kind != "heartbeat":
                delivered[port] += 1
            if ts and kind and kind.startswith("job."):
                latencies.append(arrived - ts_seconds(ts))
                per_event.setdefault(_id, []).append(arrived - ts_seconds(ts))
    if per_event_lines:  # the five latest events: which, and how the clients spread
        by_id = {e["id"]: e for e in ours}
        worst = sorted(per_event.items(), key=lambda kv: -max(kv[1]))[:5]
        for i, v in worst:
            v.sort()
            e = by_id.get(i, {})
            first, mid, last = (x * 1000 for x in (v[0], v[len(v) // 2], v[-1]))
            print(
                f"  {e.get('type', '?'):14} job {str((e.get('job') or {}).get('id'))[:8]} "
                f"first {first:5.0f}  p50 {mid:5.0f}  last {last:5.0f} ms"
            )
    # deliveries per second while the imports published: from the first event to the last
    watch = max(last_ts - first_ts, 1e-3)
    return {
        "scenario": "dashboard",
        "clients": n,
        "daphnes": len(daphnes),
        "load": load,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "max_ms": max(latencies or [float("nan")]) * 1000,
        "lost": lost,
        "lost_types": lost_types,
        "must_per_client": len(must),
        "clients_done": clients_done,
        "deliveries_per_s": [round(delivered[p] / watch) for p in ports],
        "daphne_cpu": [round(cpu[p] * 100) for p in ports],
        "watch_s": round(watch, 2),
        **arrival,
    }


def dashboard_table(rows: list[dict], target_ms: dict[int, float]) -> list[str]:
    """Markdown rows: quiet and loaded side by side for each number of daphne processes."""
    out = [
        "| daphne processes | background load | clients | p50 ms | p99 ms (each run) | "
        "runs under target | max ms | stage/terminal lost | deliveries/s per process | "
        "daphne CPU % per process |",
        "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        target = target_ms[r["load"]]
        out.append(
            f"| {r['daphnes']} | {r['load']} | {r['clients']} | {r['p50_ms']:.0f} | "
            f"{' / '.join(f'{x:.0f}' for x in r['p99_runs'])} | "
            f"{sum(x < target for x in r['p99_runs'])} of {len(r['p99_runs'])} (< {target:g}) | "
            f"{r['max_ms']:.0f} | {r['lost']} | "
            f"{' + '.join(str(x) for x in r['deliveries_per_s'])} | "
            f"{' + '.join(str(x) for x in r['daphne_cpu'])} |"
        )
    return out
