"""The RQ worker Intake runs (settings ``RQ["WORKER_CLASS"]``)."""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from rq.worker import Worker

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

    # recovery ------------------------------------------------------------------------------

    @property
    def dequeue_timeout(self) -> int:
        # wake up while idle often enough to run the job check
        return max(1, min(super().dequeue_timeout, int(settings.JOB_CHECK_SECONDS)))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._check_due()

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            try:
                super().run_maintenance_tasks()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # RQ would quit here; its registries can be cleaned next time
                log.warning("RQ maintenance skipped: Redis is not reachable (%s)", exc)
        self._check_jobs()

    def _check_due(self) -> bool:
        return self.scheduler is not None and time.monotonic() >= self._next_check

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
