"""The RQ worker Intake runs (settings ``RQ["WORKER_CLASS"]``)."""

from __future__ import annotations

import gc
import os
from typing import Any

from django.conf import settings
from rq.worker import Worker

from realtime import publish
from realtime.metrics import metrics


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
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lower_by = settings.WORKER_NICE - os.nice(0)
        if lower_by > 0:
            os.nice(lower_by)
        publish.warm_up()

    def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
        try:
            return super().perform_job(job, queue, execution)
        finally:
            # a work horse ends with os._exit (no atexit): its last counts (events published)
            # go to /metrics now or never
            metrics.flush()

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        gc.collect()
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()  # the parent collects as before; the horse has its own copy
