"""The ``bom:<id>`` topic kind for the realtime core: who may follow it, its current state, and
when a stream of it has nothing left to wait for."""

from __future__ import annotations

from typing import Any

from imports.serializers import job_snapshot

from . import selectors
from .models import Bom

TERMINAL_EVENTS = frozenset({"enrichment.completed", "enrichment.failed"})


def _bom(ident: str, organization_id: int | None = None) -> Bom | None:
    if not ident.isdecimal() or len(ident) > 18 or ident != str(int(ident)):
        return None  # ``bom:012`` would find BOM 12, whose events go to ``bom:12``
    qs = Bom.objects.select_related("latest_job")
    if organization_id is not None:
        qs = qs.filter(organization_id=organization_id)
    return qs.filter(pk=int(ident)).first()


def bom_visible(ident: str, organization_id: int) -> bool:
    """Another tenant's BOM and a BOM that does not exist answer alike: False."""
    return _bom(ident, organization_id) is not None


def bom_snapshot(ident: str) -> dict[str, Any] | None:
    """``{"bom_id", "bom": {...}, "state": {...}, "job": {...} | None}``: the latest run."""
    bom = _bom(ident)
    if bom is None:
        return None
    job = bom.latest_job
    return {
        "bom_id": bom.id,
        "bom": {"id": bom.id, "name": bom.name, "line_count": bom.line_count},
        "state": selectors.run_state(job),
        "job": job_snapshot(job) if job is not None else None,
    }


def bom_run_ended(body: dict[str, Any]) -> bool:
    """Nothing more will come: no run, or the latest one has ended."""
    job = body.get("job")
    return job is None or job.get("status") in ("completed", "failed", "cancelled")
