"""Plugging purchase orders into the job machinery (called from ``ImportsConfig.ready``)."""

from __future__ import annotations


def register() -> None:
    from ..jobs import register_runner
    from ..models import JobKind
    from ..services import register_retry
    from .services import purchase_order_job_retry
    from .signals import connect
    from .workflow import run_purchase_order

    # no first stage: a retry starts at the failed stage, which the runner itself announces
    register_runner(JobKind.PURCHASE_ORDER, run_purchase_order)
    register_retry(JobKind.PURCHASE_ORDER, purchase_order_job_retry)
    connect()
