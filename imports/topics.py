"""What ``imports`` plugs into the stream core (called from ``ImportsConfig.ready()``).

- ``job:<uuid>``: one job of any kind (every kind is an ``ImportJob``); its snapshot is the job's
  full state, and a stream on it ends with the job.
- ``org:<id>``: everything in a tenant (the activity feed); its snapshot is the import-status
  summary. It never ends.
- Who a user is in an organization (``Membership``) and the import-status summary that the
  summary stream sends.
"""

from __future__ import annotations

import uuid
from typing import Any

from realtime import topics

from .models import TERMINAL_STATUSES, ImportJob, Membership, Organization
from .selectors import import_status_summary
from .serializers import job_snapshot
from .tenancy import parse_organization

JOB_TERMINAL_EVENTS = frozenset({"job.completed", "job.failed", "job.cancelled"})


def job_visible(ident: str, organization_id: int) -> bool:
    try:
        canonical = str(uuid.UUID(ident))
    except ValueError:
        return False  # not a job id: the same answer as another tenant's job
    if canonical != ident:
        # an upper-case or re-hyphenated id finds the job, but its events are published
        # under the id as the API writes it: the stream would never get one
        return False
    return ImportJob.objects.filter(pk=ident, organization_id=organization_id).exists()


def job_state(ident: str) -> dict[str, Any] | None:
    job = ImportJob.objects.filter(pk=ident).first()
    return {"job": job_snapshot(job)} if job is not None else None


def job_ended(body: dict[str, Any]) -> bool:
    return (body.get("job") or {}).get("status") in TERMINAL_STATUSES


def org_visible(ident: str, organization_id: int) -> bool:
    return ident == str(organization_id)


def org_state(ident: str) -> dict[str, Any] | None:
    summary = status_summary(int(ident), 5) if ident.isdecimal() else None
    return {"status": summary} if summary is not None else None


def status_summary(organization_id: int, limit: int) -> dict[str, Any] | None:
    org = Organization.objects.filter(pk=organization_id).first()
    if org is None:
        return None
    return import_status_summary(organization=org, limit=limit)


def member(user_id: int, organization: str | None) -> topics.Member | None:
    qs = Membership.objects.filter(user_id=user_id, user__is_active=True)
    if organization:
        # raises InvalidOrganization (a ValueError naming the selector) for a malformed one
        kind, value = parse_organization(organization)
        qs = (
            qs.filter(organization_id=value)
            if kind == "id"
            else qs.filter(organization__slug=value)
        )
    found = qs.order_by("created_at", "id").values_list("organization_id", "role").first()
    return topics.Member(*found) if found is not None else None


def register() -> None:
    topics.register(
        "job",
        authorize=job_visible,
        snapshot=job_state,
        ended=job_ended,
        terminal_events=JOB_TERMINAL_EVENTS,
    )
    topics.register("org", authorize=org_visible, snapshot=org_state)
    topics.register_membership(member)
    topics.register_summary(status_summary)
