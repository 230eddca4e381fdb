"""The RQ worker Intake runs (settings ``RQ["WORKER_CLASS"]``)."""

from __future__ import annotations

import gc
import os
from typing import Any

from django.conf import settings
from rq.worker import Worker


class IntakeWorker(Worker):
    """RQ's forking worker, at a lower CPU priority, with its objects frozen before each fork.

    Priority: an import is throughput work and a stream is latency work. Where both share a
    machine, ``WORKER_NICE`` (e.g. 10) runs the worker and the processes it starts below
    daphne, so a fan-out gets the CPU first. Measured on 2 cores: at 1,000 SSE clients p99
    120-155 -> 89-96 ms and the final state on every client 98-134 -> 73-77 ms, but an import
    on its own 7 % slower (PostgreSQL's backends keep their priority and win the CPU from the
    validator), so the default is 0: a deployment that shares a box opts in.

    Freezing: a work horse shares its parent's memory copy-on-write, but the horse's garbage
    collector writes to every tracked object it scans, copying the page it sits on. Frozen
    objects are left alone, so more of Django and the app stay shared between worker and horse.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lower_by = settings.WORKER_NICE - os.nice(0)
        if lower_by > 0:
            os.nice(lower_by)

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        gc.collect()
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()  # the parent collects as before; the horse has its own copy
