"""The RQ worker Intake runs (settings ``RQ["WORKER_CLASS"]``)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from rq.exceptions import StopRequested
from rq.queue import Queue
from rq.worker import Worker
from rq.worker.base import BaseWorker

from config import database_timeouts
from realtime import publish
from realtime.metrics import metrics

from . import serializers as snapshots

log = logging.getLogger(__name__)


class IntakeWorker(Worker):
    """RQ's forking worker, at a lower CPU priority, with its objects frozen before each fork.

    Priority: an import is throughput work and a stream is latency work. ``WORKER_NICE``
    (default 10) runs the worker and the processes it starts below daphne, so where both
    share a machine a fan-out gets the CPU first; where nothing competes, nice changes
    nothing. Measured on 2 shared cores, side by side (bench/RESULTS.md): at 1,000 clients p99
    50.5 -> 41 ms (SSE) and 53.5 -> 45 ms (WebSocket), medians of 12 runs, and an import's
    throughput the same (medians 169k and 167k rows/s over four interleaved pairs).
    ``WORKER_NICE=0`` leaves the worker at the priority it was started with.

    A job's first events go out from a fresh work horse: ``realtime.publish.warm_up`` loads
    what publishing needs in the worker, once, so that each horse inherits it.

    Freezing: a work horse shares its parent's memory copy-on-write, but the horse's garbage
    collector writes to every tracked object it scans, copying the page it sits on. Frozen
    objects are left alone, so more of Django and the app stay shared between worker and horse.

    Recovery (``imports.recovery``): started with its scheduler (``--with-scheduler``), the
    worker itself checks every ``JOB_CHECK_SECONDS`` for lost, orphaned and stalled jobs —
    idle or while its horse runs, with nothing to schedule and nothing that a Redis restart
    could forget — and starts RQ's scheduler process again when it died (it exits on a Redis
    error, and RQ alone would restart it only every 10 minutes). When its own work horse dies,
    it resumes that job at once. A Redis outage is waited out, not a reason to quit.

    Stopping: Ctrl-C or SIGTERM is RQ's warm stop at any moment, and stops an idle worker at
    once. RQ alone could lose it or delay it: during start-up, in its command listener's
    thread, where its handler's raise is swallowed, and in its wait for its scheduler process;
    and right after it took a job off its queue, its raise dropped the job. Each is covered
    below.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lower_by = settings.WORKER_NICE - os.nice(0)
        if lower_by > 0:
            os.nice(lower_by)
        publish.warm_up()
        snapshots.warm_up()  # a job's snapshot fields, built once for every horse
        database_timeouts.apply("worker")  # wider than the web's: batches are big statements
        gc.collect()  # start-up's garbage, before the first fork freezes what is left
        self._next_check = 0.0
        self._stop_during_start_up: int | None = None
        self._stop_during_start_up_at = 0.0
        self._starting_pid = os.getpid()
        self._shutdown_date_unsaved = False

    # stopping ------------------------------------------------------------------------------

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        # RQ installs its stop handlers after start-up: after it has logged "Listening on"
        # and started its scheduler. A stop signal before then raised KeyboardInterrupt in the
        # middle of start-up, a traceback instead of a warm stop. Until then it is noted.
        self._starting_pid = os.getpid()
        before = {stop: signal.signal(stop, self._note_stop_during_start_up) for stop in _STOPS}
        try:
            super().bootstrap(*args, **kwargs)
        except BaseException:
            for stop, handler in before.items():
                signal.signal(stop, handler)
            raise

    def _in_a_forked_child(self, signum: int) -> bool:
        """Whether this is a process the worker forked (RQ's scheduler, a work horse) that a
        signal reached before it installed handlers of its own: not the worker's to handle.
        SIGTERM ends it, as it will once it has them (a stopping worker sends its scheduler
        SIGTERM and waits for it); SIGINT is ignored, as RQ's work horse ignores it."""
        if os.getpid() == self._starting_pid:
            return False
        if signum == signal.SIGTERM:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        return True

    def _note_stop_during_start_up(self, signum: int, frame: Any) -> None:
        if self._in_a_forked_child(signum):
            return
        if self._stop_during_start_up is None:
            self._stop_during_start_up = signum
            self._stop_during_start_up_at = time.monotonic()
        elif time.monotonic() - self._stop_during_start_up_at >= 1:
            # a second one is RQ's cold stop (RQ too ignores a duplicate within a second, as a
            # supervisor and a terminal may both pass one on). RQ's teardown is not reached
            # from start-up: the worker's registration goes here.
            self.log.warning("Worker %s: cold shut down", self.name)
            if self.scheduler is not None and self.scheduler._process is not None:
                self.stop_scheduler()
            with contextlib.suppress(redis.RedisError):
                self.register_death()
            raise SystemExit

    def _start_scheduler(self, *args: Any, **kwargs: Any) -> None:
        if self._stop_during_start_up is None:  # not for a worker already asked to stop
            super()._start_scheduler(*args, **kwargs)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        signum, self._stop_during_start_up = self._stop_during_start_up, None
        if signum is not None:
            # RQ's own warm stop, as if the signal came now. Its StopRequested, raised outside
            # RQ's work loop, would be a traceback; the loop's first maintenance stops it.
            with contextlib.suppress(StopRequested):
                self.request_stop(signum, None)

    def request_stop(self, signum: int, frame: Any) -> None:
        # While idle RQ stops by raising StopRequested from its signal handler, wherever the
        # main thread is. Where that is code that swallows exceptions, the stop went with it
        # and the worker went on waiting for jobs: a log handler's emit ("--- Logging error
        # ---" while RQ logged its registry cleaning) or a finalizer ("Exception ignored in").
        # The flag is RQ's own; idle, the worker's maintenance stops on it (below), and in
        # those two places nothing is raised, so no traceback either.
        #
        # Where the worker has taken a job off its queue and not yet started it, RQ's raise
        # dropped the job: gone from the queue, "queued" for ever (the job check now finds
        # such a job, a minute later). There, and in RQ's work loop's own lines (before its
        # `try`, a raise was a traceback), the flag is enough: a taken job runs, and the
        # worker stops before it waits for another.
        if self._in_a_forked_child(signum):
            return
        self._stop_requested = True
        try:
            super().request_stop(signum, frame)
        except StopRequested:
            if _a_job_is_taken(frame):
                self.set_shutdown_requested_date()  # as RQ's stop of a busy worker does
            elif not _raise_would_be_lost(frame):
                raise

    def request_force_stop(self, signum: int, frame: Any) -> None:
        if not self._in_a_forked_child(signum):
            super().request_force_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        # RQ's warm stop of a busy worker writes the stop's time to Redis from inside its
        # signal handler. With Redis away just then, the error came out of whatever the main
        # thread was doing (waiting for its work horse) and the worker quit, leaving its horse
        # unwatched; an unreachable host could also hold the handler for RQ's timeouts. The
        # stop itself is RQ's flag, set before: the time is written by the next heartbeat.
        self._shutdown_date_unsaved = True

    def _save_shutdown_date(self) -> None:
        if self._shutdown_date_unsaved:
            try:
                super().set_shutdown_requested_date()
            except redis.RedisError as exc:  # next heartbeat again; the date is for display
                log.warning("stop time not saved: Redis did not take it (%s)", exc)
            else:
                self._shutdown_date_unsaved = False

    def _stop_if_requested(self) -> None:
        # only ever idle: RQ calls its maintenance between jobs (and while busy, RQ's own
        # stop already waits for the job through the same flag)
        if self._stop_requested:
            raise StopRequested

    def stop_scheduler(self) -> None:
        # RQ sends its scheduler process one SIGTERM and waits for it without limit. A SIGTERM
        # that reaches a process just forked, before Python in it has set up its signals, is
        # dropped (CPython clears pending signals in a new child): a worker stopped right after
        # start-up waited for ever. It is sent again each second, and after 10 s, SIGKILL.
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or not process.pid:
            return
        for _ in range(_SCHEDULER_STOP_SECONDS):
            if process.exitcode is not None:  # reaped: its pid may be another process's now
                return
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
            process.join(1)
        if process.exitcode is None:
            process.kill()
            process.join()

    def subscribe(self) -> None:
        # RQ listens for its commands in a thread. The kernel may hand a signal sent to the
        # process to any thread that does not block it, and Python runs the handler only in
        # the main thread, once that wakes up: waiting for a job, up to `dequeue_timeout`
        # (15 s) later. Ctrl-C then took 15 s, and the run command, which waits 15 s before it
        # kills, could cut the warm stop short. RQ's horse monitor, waiting for its work horse,
        # is woken by SIGALRM, with the same risk. The thread starts with these signals
        # blocked (a new thread inherits its creator's mask): they all reach the main thread.
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {*_STOPS, signal.SIGALRM})
        try:
            super().subscribe()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    # recovery ------------------------------------------------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        # wake up while idle often enough to run the job check
        return max(1, min(super().dequeue_timeout, int(settings.JOB_CHECK_SECONDS)))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._check_due() or self._stop_requested

    def run_maintenance_tasks(self) -> None:
        # Idle, RQ runs this before each wait for a job (up to `dequeue_timeout`) and never
        # checks its stop flag in between: a stop whose raise was swallowed stops here.
        self._stop_if_requested()
        if super().should_run_maintenance_tasks:
            try:
                super().run_maintenance_tasks()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # RQ would quit here; its registries can be cleaned next time
                log.warning("RQ maintenance skipped: Redis is not reachable (%s)", exc)
        self._check_jobs()
        self._stop_if_requested()

    def _check_due(self) -> bool:
        return (
            self.scheduler is not None
            and not self._stop_requested  # no check, nor a scheduler started again
            and time.monotonic() >= self._next_check
        )

    def _check_jobs(self) -> None:
        """Run the job check and keep RQ's scheduler alive (workers with their scheduler)."""
        if not self._check_due():
            return
        from .recovery import check_jobs_safely

        self._next_check = time.monotonic() + settings.JOB_CHECK_SECONDS
        try:
            check_jobs_safely()
        finally:
            connections.close_all()  # never carry a connection into a forked process
        scheduler = self.scheduler
        if scheduler is not None and not (scheduler._process and scheduler._process.is_alive()):
            try:
                scheduler.acquire_locks(auto_start=True)
            except redis.RedisError as exc:
                log.warning("RQ scheduler not restarted: Redis is not reachable (%s)", exc)

    def execute_job(self, job: Any, queue: Any) -> None:
        # RQ asks Redis for the job's status when its horse exits; with Redis away just then,
        # RQ's worker would quit. The job's own row already holds its outcome (and a job left
        # queued or processing is picked up by the check), so wait Redis out instead.
        try:
            super().execute_job(job, queue)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis went away while job %s ended (%s); the worker goes on", job.id, exc)
        finally:
            gc.collect()  # while idle: the next fork freezes what is left (fork_work_horse)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().set_state(state, pipeline)
        try:  # before each dequeue, outside RQ's own wait for Redis
            super().set_state(state)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker state not saved: Redis is not reachable (%s)", exc)

    def check_for_suspension(self, burst: bool) -> None:
        # the top of RQ's work loop: with Redis away, RQ's worker would quit here too; the
        # dequeue that follows waits for Redis with backoff
        try:
            super().check_for_suspension(burst)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("suspension not checked: Redis is not reachable (%s)", exc)

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        # while a horse runs: a Redis outage must not make the worker quit and orphan it
        try:
            super().maintain_heartbeats(job, execution)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker heartbeat skipped: Redis is not reachable (%s)", exc)
        self._save_shutdown_date()
        self._check_jobs()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        try:
            super().heartbeat(timeout, pipeline)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker heartbeat skipped: Redis is not reachable (%s)", exc)

    def handle_work_horse_killed(self, job: Any, retpid: Any, ret_val: Any, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        from .recovery import horse_lost

        how = (
            f"its process was killed by signal {os.WTERMSIG(ret_val)}"
            if ret_val and os.WIFSIGNALED(ret_val)
            else f"its process exited with status {ret_val}"
        )
        try:
            horse_lost(rq_job_id=job.id, detail=how)
        except Exception:  # the periodic check resumes it later
            log.exception("could not resume job %s after its work horse died", job.id)
        finally:
            connections.close_all()

    def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
        try:
            return super().perform_job(job, queue, execution)
        finally:
            # a work horse ends with os._exit (no atexit): its last counts (events published)
            # go to /metrics now or never
            metrics.flush()

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        connections.close_all()  # the horse opens its own; a shared socket would corrupt both
        # Freezing is O(1). The full collection that keeps the frozen set free of garbage runs
        # after each job instead (execute_job), off the path from dequeue to the job's start:
        # here it cost every job 60-74 ms before its first line ran (measured; RQ's own pickup
        # and fork are about 50 ms).
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()  # the parent collects as before; the horse has its own copy


_STOPS = (signal.SIGINT, signal.SIGTERM)
_SCHEDULER_STOP_SECONDS = 10
_LOGGING = os.path.dirname(logging.__file__)


# RQ's steps from waiting for a job to running it, and the local each holds the job (or its
# id) in once taken; the innermost one on the stack decides (RQ 3.0). ``dequeue_any`` goes
# back to BLPOP when the id it took has no job (its hash expired), its ``result`` still set:
# there only the steps with the id in hand count (``_DEQUEUE_ANY``).
_TAKING = {
    Queue.lpop.__func__.__code__: ("result", "blob"),  # BLPOP, or LPOP in burst mode
    Queue.lmove.__func__.__code__: ("result",),
    BaseWorker.dequeue_job_and_maintain_ttl.__code__: ("result",),
}
_DEQUEUE_ANY = Queue.dequeue_any.__func__.__code__
_DEQUEUE_ANY_STEPS = {"as_text", "_fetch_dequeued_job"}


def _a_job_is_taken(frame: Any) -> bool:
    """Whether a signal interrupted the worker after it took a job off its queue and before
    it started it, or in RQ's work loop's own lines. Still waiting for a job (inside BLPOP,
    nothing returned yet) it did not, nor in the loop's maintenance: there RQ's raise is what
    cuts the wait or the check short."""
    inner = None  # the code the frame below called
    while frame is not None:
        code = frame.f_code
        if code is _WORK_LOOP:
            return inner is None or inner.co_name in _WORK_LOOP_STEPS
        if code is _DEQUEUE_ANY:
            return (inner is not None and inner.co_name in _DEQUEUE_ANY_STEPS) or (
                frame.f_locals.get("job_fetch_result") is not None
            )
        held = _TAKING.get(code)
        if held is not None:
            return any(frame.f_locals.get(name) is not None for name in held)
        inner, frame = code, frame.f_back
    return False


_WORK_LOOP = BaseWorker.work.__code__
# what RQ's work loop calls with a job taken, just before its `try`, and after its loop
_WORK_LOOP_STEPS = {"execute_job", "_install_signal_handlers", "teardown"}


def _raise_would_be_lost(frame: Any) -> bool:
    """Whether a signal interrupted code that swallows what its handler raises: a log
    handler's ``emit`` (logging's own catch everything) or a finalizer."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or (
            code.co_name in {"emit", "handleError"} and code.co_filename.startswith(_LOGGING)
        ):
            return True
        frame = frame.f_back
    return False
