"""The worker process itself (imports/worker.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import os, django
django.setup()
from django.conf import settings
from redis import Redis
from imports.worker import IntakeWorker
IntakeWorker(["default"], connection=Redis.from_url(settings.REDIS_URL))
print(os.nice(0))
"""


def _niceness_of_a_worker(nice: str | None) -> int:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "WORKER_NICE": nice or ""}
    if nice is None:
        del env["WORKER_NICE"]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_a_worker_runs_at_the_configured_cpu_priority():
    ours = os.nice(0)
    assert _niceness_of_a_worker("7") == max(ours, 7)  # lowered to WORKER_NICE
    assert _niceness_of_a_worker("0") == ours  # 0 leaves it alone, never raises it
    assert _niceness_of_a_worker(None) == max(ours, 10)  # by default: below daphne


def test_a_worker_loads_what_publishing_needs_before_it_forks_work_horses():
    probe = """
import sys, django
django.setup()
from django.conf import settings
from redis import Redis
from realtime import publish
assert "channels_redis.serializers" not in sys.modules
from imports.worker import IntakeWorker
IntakeWorker(["default"], connection=Redis.from_url(settings.REDIS_URL))
print(publish._layer_wire.cache_info().currsize, "channels_redis.serializers" in sys.modules)
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["1", "True"]


def test_the_warm_up_does_not_stop_a_worker_when_redis_does_not_answer(monkeypatch, caplog):
    from redis import Redis

    from config.devservers import free_port
    from realtime import publish

    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    monkeypatch.setattr(publish, "client", lambda: dead)
    publish.warm_up()
    assert "did not answer the warm-up ping" in caplog.text


STOP_MID_CHECK = """
import os, signal, threading, time, types, django
django.setup()
from django.conf import settings
from django.db import connection
from redis import Redis
from rq.exceptions import StopRequested
from imports import recovery
from imports.worker import IntakeWorker

worker = IntakeWorker(["default"], connection=Redis.from_url(settings.REDIS_URL))
worker._install_signal_handlers()  # RQ's own: SIGTERM while idle raises StopRequested
worker.scheduler = types.SimpleNamespace(_process=None, acquire_locks=lambda auto_start: None)

def check_jobs(exclusive):  # the signal lands while the check waits on the database
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(5)")

recovery.check_jobs = check_jobs
started = time.monotonic()
try:
    worker._check_jobs()
except StopRequested:
    print(f"stopped {time.monotonic() - started:.1f}")
else:
    print("went on")
"""


def test_a_stop_signal_during_the_job_check_stops_the_worker_without_an_error():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    proc = subprocess.run(
        [sys.executable, "-c", STOP_MID_CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome, seconds = proc.stdout.split()[-2:]
    assert outcome == "stopped", proc.stdout + proc.stderr[-2000:]
    assert float(seconds) < 4  # the query was cut short, not waited out
    assert "job check failed" not in proc.stderr and "Traceback" not in proc.stderr
