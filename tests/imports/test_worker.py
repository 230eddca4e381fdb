"""The worker process itself (imports/worker.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from config.devservers import free_port
    from realtime import publish

    dead = Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(publish, "client", lambda: dead)
    publish.warm_up()
    assert "did not answer the warm-up ping" in caplog.text


STOP_MID_CHECK = """
import os, signal, sys, threading, time, types, django
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
if sys.argv[1] == "in the work loop":  # its maintenance, before it waits for a job
    worker.work(logging_level="INFO")
    print(f"stopped {time.monotonic() - started:.1f}")
else:
    try:
        worker._check_jobs()
    except StopRequested:
        print(f"stopped {time.monotonic() - started:.1f}")
    else:
        print("went on")
"""


def _stopped_worker(script: str, *args: str, **env: str) -> tuple[str, float]:
    """Run a worker script that prints "stopped <seconds>": its stderr and those seconds."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a scheduler process it forked goes with it on a timeout
    )
    try:
        stdout, stderr = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"the worker did not stop: {stderr[-3000:]}") from None
    assert proc.returncode == 0, stderr[-2000:]
    outcome, seconds = stdout.split()[-2:]
    assert outcome == "stopped", stdout + stderr[-2000:]
    return stderr, float(seconds)


@pytest.mark.parametrize("where", ["alone", "in the work loop"])
def test_a_stop_signal_during_the_job_check_stops_the_worker_without_an_error(where):
    stderr, seconds = _stopped_worker(STOP_MID_CHECK, where)
    assert seconds < 4  # the query was cut short, not waited out
    assert "job check failed" not in stderr and "Traceback" not in stderr


STOP_WHILE_BUSY_WITHOUT_REDIS = """
import os, signal, django
django.setup()
from django.conf import settings
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.worker import WorkerStatus
from config.devservers import free_port
from imports.worker import IntakeWorker

live = Redis.from_url(settings.REDIS_URL)
worker = IntakeWorker(["default"], connection=live)
worker._install_signal_handlers()
worker._state = WorkerStatus.BUSY  # its work horse runs a job
worker.connection = Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
os.kill(os.getpid(), signal.SIGTERM)  # RQ's handler wrote the stop's time to Redis here
assert worker._stop_requested
worker._save_shutdown_date()  # a heartbeat while Redis is away: tried, kept for the next one
worker.connection = live
worker._save_shutdown_date()
print("stopped 0" if worker.shutdown_requested_date is not None else "not saved 0")
"""


def test_a_stop_signal_while_busy_and_redis_is_away_is_still_a_warm_stop():
    """The warm stop of a busy worker wrote its time to Redis inside the signal handler: a
    Redis error there ended the worker (and left its work horse unwatched). The time is now
    written by the next heartbeat, and again at the next one if Redis did not take it."""
    stderr, _ = _stopped_worker(STOP_WHILE_BUSY_WITHOUT_REDIS)
    assert "stop time not saved: Redis did not take it" in stderr
    assert "Traceback" not in stderr


STOP_DURING_START_UP = """
import os, signal, sys, time, django
django.setup()
from django.conf import settings
from redis import Redis
from rq.scheduler import RQScheduler
from rq.worker_registration import get_keys
from imports import recovery
from imports.worker import IntakeWorker

recovery.check_jobs = lambda exclusive: None  # not this test's (nor its database's) business
redis = Redis.from_url(settings.REDIS_URL)
worker = IntakeWorker([f"intake-test-start-up-{os.getpid()}"], connection=redis)

def ctrl_c(apart):  # twice: a supervisor's and a terminal's, or a second one later
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(apart)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)

if sys.argv[1] == "before its scheduler":
    worker._start_scheduler = lambda *args: ctrl_c(0)
elif sys.argv[1] == "twice, a second apart":
    worker._start_scheduler = lambda *args: ctrl_c(1.1)
elif sys.argv[1] == "its scheduler misses a SIGTERM":
    # as a SIGTERM that reaches a process just forked, before Python there sets up its signals
    start, install = RQScheduler.start, RQScheduler._install_signal_handlers
    def start_deaf_then_ctrl_c(self):
        noting = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        process = start(self)
        signal.signal(signal.SIGTERM, noting)
        ctrl_c(0)
        return process
    def install_late(self):
        time.sleep(1.5)
        install(self)
    RQScheduler.start, RQScheduler._install_signal_handlers = start_deaf_then_ctrl_c, install_late
else:  # the scheduler process has just been forked, with the worker's handlers
    start, install = RQScheduler.start, RQScheduler._install_signal_handlers
    def start_then_ctrl_c(self):
        process = start(self)
        ctrl_c(0)
        return process
    def install_late(self):  # only the worker's SIGTERM can end it in time
        time.sleep(30)
        install(self)
    RQScheduler.start, RQScheduler._install_signal_handlers = start_then_ctrl_c, install_late
started = time.monotonic()
try:
    worker.work(with_scheduler=True, logging_level="INFO")
finally:  # a stopped worker is no longer registered, however it stopped
    print(f"registered={int(worker.key in get_keys(connection=redis))}", file=sys.stderr)
    print(f"stopped {time.monotonic() - started:.1f}")
"""


@pytest.mark.parametrize("when", ["before its scheduler", "after its scheduler"])
def test_a_stop_signal_while_the_worker_starts_up_is_a_warm_stop(when):
    """RQ logs "Listening on" and starts its scheduler process before it installs its stop
    handlers: a Ctrl-C then was a KeyboardInterrupt in the middle of start-up. The scheduler,
    forked meanwhile, must still stop when the worker's teardown sends it SIGTERM."""
    stderr, seconds = _stopped_worker(STOP_DURING_START_UP, when)
    assert seconds < 8  # without the fix: a traceback, or 10 s and SIGKILL, or never
    assert "warm shut down requested" in stderr and "registered=0" in stderr
    assert "Traceback" not in stderr and "cold shut down" not in stderr


def test_a_stopping_worker_does_not_wait_for_ever_for_its_scheduler():
    """RQ sends its scheduler one SIGTERM, then waits for it without limit."""
    stderr, seconds = _stopped_worker(STOP_DURING_START_UP, "its scheduler misses a SIGTERM")
    assert seconds < 20  # without the fix: never
    assert "Scheduler with PID" in stderr and "has stopped" in stderr  # its own clean stop


def test_a_second_stop_signal_while_the_worker_starts_up_is_a_cold_stop():
    stderr, seconds = _stopped_worker(STOP_DURING_START_UP, "twice, a second apart")
    assert seconds < 10
    assert "cold shut down" in stderr and "Traceback" not in stderr
    assert "registered=0" in stderr  # RQ's teardown is not reached from start-up


TAKEN_THEN_STOPPED = """
import os, signal, sys, time, django
django.setup()
from django.conf import settings
from redis import Redis
from rq import Queue
from imports.worker import IntakeWorker

where = sys.argv[1]
redis = Redis.from_url(settings.REDIS_URL)
names = [f"intake-test-taken-{os.getpid()}", f"intake-test-taken-{os.getpid()}-2"]  # BLPOP

def stop(here):
    if here == where:
        os.kill(os.getpid(), signal.SIGTERM)

class StoppingQueue(Queue):
    @classmethod
    def _fetch_dequeued_job(cls, *args, **kwargs):  # BLPOP has taken the job's id
        stop("fetching it")
        return super()._fetch_dequeued_job(*args, **kwargs)

class StoppingWorker(IntakeWorker):
    def reorder_queues(self, reference_queue):  # the dequeue has the job
        stop("after the dequeue")
        super().reorder_queues(reference_queue)

    def execute_job(self, job, queue):  # RQ's work loop is about to run it
        stop("just before running it")
        super().execute_job(job, queue)

job = StoppingQueue(names[0], connection=redis).enqueue("math.sqrt", 4)
worker = StoppingWorker(names, connection=redis, queue_class=StoppingQueue)
started = time.monotonic()
worker.work(logging_level="INFO")
print(f"job={job.get_status(refresh=True).value}", file=sys.stderr)
print(f"stopped {time.monotonic() - started:.1f}")
"""


@pytest.mark.parametrize("where", ["fetching it", "after the dequeue", "just before running it"])
def test_a_stop_signal_after_the_worker_took_a_job_runs_the_job_then_stops(where):
    """RQ takes a job off its queue before it marks itself busy; a stop signal in between
    raised from RQ's handler and dropped the job: gone from its queue, "queued" for ever. A
    taken job now runs, and the worker stops after it (a warm stop)."""
    stderr, seconds = _stopped_worker(TAKEN_THEN_STOPPED, where)
    assert "job=finished" in stderr, stderr[-2000:]
    assert "warm shut down requested" in stderr and "Traceback" not in stderr
    assert seconds < 8  # a wait for another job would add dequeue_timeout (15 s)


STOP_BEFORE_THE_WORK_LOOP = """
import os, signal, time, django
django.setup()
from django.conf import settings
from redis import Redis
from imports.worker import IntakeWorker

class StoppedBeforeTheLoop(IntakeWorker):
    def _install_signal_handlers(self):  # RQ's last step before its work loop's `try`
        super()._install_signal_handlers()
        os.kill(os.getpid(), signal.SIGTERM)

redis = Redis.from_url(settings.REDIS_URL)
worker = StoppedBeforeTheLoop([f"intake-test-before-loop-{os.getpid()}"], connection=redis)
started = time.monotonic()
worker.work(logging_level="INFO")
print(f"stopped {time.monotonic() - started:.1f}")
"""


def test_a_stop_signal_just_before_the_work_loop_is_a_warm_stop():
    """RQ installs its stop handlers, then enters its work loop's `try`: a stop signal in
    between raised StopRequested outside it, a traceback and no teardown."""
    stderr, seconds = _stopped_worker(STOP_BEFORE_THE_WORK_LOOP)
    assert "warm shut down requested" in stderr and "Traceback" not in stderr
    assert "unsubscribing from channel" in stderr  # RQ's teardown ran
    assert seconds < 8  # a wait for a job would add dequeue_timeout (15 s)


STOP_WHERE_A_RAISE_IS_SWALLOWED = """
import logging, os, signal, sys, time, django
django.setup()
from django.conf import settings
from redis import Redis
from imports.worker import IntakeWorker

where, cleaning = sys.argv[1], int(sys.argv[2])  # the signal lands in that registry cleaning
redis = Redis.from_url(settings.REDIS_URL)
worker = IntakeWorker(
    [f"intake-test-stop-swallowed-{os.getpid()}"], connection=redis, maintenance_interval=0
)
cleanings = []

def stop_at_the_cleaning():
    cleanings.append(True)
    if len(cleanings) == cleaning:
        os.kill(os.getpid(), signal.SIGTERM)

class SignalWhileLogging(logging.StreamHandler):
    def format(self, record):  # inside StreamHandler.emit, which swallows what is raised
        if "cleaning registries" in record.msg:
            stop_at_the_cleaning()
        return super().format(record)

class SignalWhileFinalized:
    def __del__(self):  # Python prints what a finalizer raises, and goes on
        stop_at_the_cleaning()

if where == "logging":
    logging.getLogger("rq.worker").addHandler(SignalWhileLogging())
else:
    clean_registries = worker.clean_registries
    def finalizer_then_clean():
        SignalWhileFinalized()
        clean_registries()
    worker.clean_registries = finalizer_then_clean
started = time.monotonic()
worker.work(logging_level="INFO")
print(f"stopped {time.monotonic() - started:.1f}")
"""


@pytest.mark.parametrize("where", ["logging", "finalizer"])
@pytest.mark.parametrize("cleaning", [1, 2], ids=["starting", "idle"])
def test_a_stop_signal_where_a_raise_is_swallowed_stops_the_worker(where, cleaning):
    """RQ stops an idle worker by raising from its signal handler. Raised inside a log line
    (RQ logs its registry cleaning while idle), logging swallowed it as a "Logging error";
    inside a finalizer, Python printed it and went on. The worker went on waiting for jobs
    (RQ checks its stop flag only between jobs), each wait a second here."""
    stderr, seconds = _stopped_worker(
        STOP_WHERE_A_RAISE_IS_SWALLOWED, where, str(cleaning), JOB_CHECK_SECONDS="1"
    )
    assert seconds < 10  # without the fix: never
    assert "warm shut down requested" in stderr and "cold shut down" not in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr


IDLE_WORKER = """
import django
django.setup()
from django.conf import settings
from redis import Redis
from imports.worker import IntakeWorker

redis = Redis.from_url(settings.REDIS_URL)
IntakeWorker(["intake-test-main-thread"], connection=redis).work(logging_level="INFO")
"""


def _blocked(pid: int, tid: int) -> int:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("SigBlk:")).split()[1], 16)


def test_a_stop_signal_to_the_worker_is_for_its_main_thread(tmp_path):
    """RQ's command listener runs in a thread. A stop signal the kernel handed to it waited for
    the main thread to wake up, up to 15 s later: the run command, which waits 15 s, could kill
    the worker in its warm stop. That thread blocks the stop signals, so they reach the main
    thread, which stops at once."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", IDLE_WORKER],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while b"cleaning group registries" not in log.read_bytes():
                assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            threads = sorted(int(t) for t in os.listdir(f"/proc/{worker.pid}/task"))
            assert len(threads) >= 2, threads  # the main thread and RQ's listener at least
            for_main = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)  # SIGALRM: the monitor's
            mask = sum(1 << (signum - 1) for signum in for_main)
            assert _blocked(worker.pid, worker.pid) & mask == 0
            for other in (t for t in threads if t != worker.pid):
                assert _blocked(worker.pid, other) & mask == mask, other
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(10) == 0
            assert time.monotonic() - started < 6  # a wait for a job is 15 s
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    output = log.read_text()
    assert "warm shut down requested" in output and "Traceback" not in output
