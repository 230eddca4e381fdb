"""The RQ worker Intake runs (settings ``RQ["WORKER_CLASS"]``)."""

from __future__ import annotations

import gc
from typing import Any

from rq.worker import Worker


class IntakeWorker(Worker):
    """RQ's forking worker, with the parent's objects frozen before each fork.

    A work horse shares its parent's memory copy-on-write, but the horse's garbage collector
    writes to every tracked object it scans, copying the page it sits on. Frozen objects are
    left alone, so more of Django and the app stay shared between the worker and the horse.
    """

    def fork_work_horse(self, job: Any, queue: Any) -> None:
        gc.collect()
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()  # the parent collects as before; the horse has its own copy
