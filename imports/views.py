"""Server-rendered pages: the import dashboard and the job page.

Each page renders the current state on the server and embeds the stream cursor taken *before*
that state was read, so the browser module (static/js/live.js) resumes exactly where the HTML
ends: an event that raced the render is replayed and, carrying a full snapshot, is harmless.
Actions (upload, cancel, retry, confirm) are plain form posts that call one service each; the
module upgrades them to in-place requests when JavaScript runs.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from redis.exceptions import RedisError

from realtime import log
from realtime.events import job_topic, org_topic

from . import selectors, services
from .models import ImportJob, ImportMode, ImportRowError, Membership
from .serializers import job_snapshot
from .tenancy import InvalidOrganization, membership_for

RECENT_JOBS = 20
ACTIVITY_ENTRIES = 100
ERRORS_PER_PAGE = 50


class UploadForm(forms.Form):
    file = forms.FileField()
    mode = forms.ChoiceField(choices=ImportMode.choices, initial=ImportMode.UPSERT)
    dry_run = forms.BooleanField(required=False, label="Dry run (validate only)")
    atomic = forms.BooleanField(required=False, label="All or nothing")


def _membership(request: HttpRequest) -> Membership | None:
    """Raises ``InvalidOrganization`` for a malformed ``?organization=``."""
    return membership_for(request.user, request.GET.get("organization"))


def _no_organization(request: HttpRequest, problem: str = "") -> HttpResponse:
    status = 400 if problem else 403
    return render(request, "imports/no_organization.html", {"problem": problem}, status=status)


def live_stream(
    url: str, topic: str, *, close_on_terminal: bool = False, ended: bool = False
) -> dict[str, Any]:
    """What a page's element needs to follow ``topic`` (templates/live/stream_attrs.html).

    Call it *before* reading the state the page renders: its cursor is then never newer than
    that state, and whatever happened in between is replayed to the page.
    """
    conf = settings.REALTIME
    try:
        cursor = log.last_id(topic) or ""
    except RedisError:
        # Redis is down: the page still renders; its stream (once Redis is back) starts from
        # the current state, a snapshot, instead of resuming after a cursor
        cursor = ""
    return {
        "url": url,
        "topic": topic,
        "cursor": cursor,
        # two missed heartbeats mean a dead connection (30 s at the default 15 s)
        "dead_after_ms": int(2 * conf["HEARTBEAT_SECONDS"] * 1000),
        "retry_ms": conf["BROWSER_RETRY_MS"],
        "poll_ms": conf["BROWSER_POLL_MS"],
        "close_on_terminal": close_on_terminal,
        # an ended job's page is final: its stream would only answer 204
        "ended": ended,
    }


def recent_activity(topic: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The topic's latest events for a page's activity feed; none while Redis is down (the
    page still renders from the database, and its stream catches up once Redis is back)."""
    try:
        return log.recent(topic, **kwargs)
    except RedisError:
        return []


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    try:
        membership = _membership(request)
    except InvalidOrganization as exc:
        return _no_organization(request, str(exc))
    if membership is None:
        return _no_organization(request)
    org = membership.organization
    form = UploadForm()
    status = 200
    upload_error = ""
    if request.method == "POST":
        if not membership.can_operate:
            upload_error = f"Your role '{membership.role}' can watch imports but not upload."
            status = 403
        else:
            form = UploadForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    job = services.import_job_create(
                        organization=org,
                        user=request.user,
                        upload=form.cleaned_data["file"],
                        mode=form.cleaned_data["mode"],
                        dry_run=form.cleaned_data["dry_run"],
                        atomic=form.cleaned_data["atomic"],
                        stage_only=True,  # the mapping step comes next, then the import
                    )
                except services.ServiceError as exc:
                    upload_error, status = exc.message, exc.status_code
                else:
                    return redirect("mapping-step", job_id=job.id)
            else:
                upload_error = "Choose a CSV or XLSX file to upload."
                status = 400
    live = live_stream(
        f"/api/v1/realtime/events?summary=1&limit=0&poll_interval=1&organization={org.id}",
        org_topic(org.id),
    )
    jobs = [
        job_snapshot(j)
        for j in ImportJob.objects.filter(organization=org).order_by("-created_at")[:RECENT_JOBS]
    ]
    context = {
        "membership": membership,
        "org": org,
        "form": form,
        "upload_error": upload_error,
        "summary": selectors.import_status_summary(organization=org, limit=0),
        "jobs": jobs,
        "blank_job": {"id": "", "status": "queued", "progress": 0, "error_count": 0},
        "activity": recent_activity(
            org_topic(org.id), limit=ACTIVITY_ENTRIES, skip_types=frozenset({"job.progress"})
        ),
        "live": live,
        "max_upload_mb": settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024),
        "export_presets": ["intake", "shopify", "woocommerce"],
    }
    return render(request, "imports/dashboard.html", context, status=status)


def _job_for(request: HttpRequest, job_id: Any) -> tuple[Membership, ImportJob]:
    job = ImportJob.objects.select_related("organization").filter(pk=job_id).first()
    membership = membership_for(request.user, str(job.organization_id)) if job is not None else None
    if job is None or membership is None:
        raise Http404("No such job.")  # another tenant's job is exactly like a missing one
    return membership, job


@login_required
def job_page(request: HttpRequest, job_id: Any) -> HttpResponse:
    membership, job = _job_for(request, job_id)
    live = live_stream(
        f"/api/v1/jobs/{job.id}/events?organization={job.organization_id}",
        job_topic(job.id),
        close_on_terminal=True,
        ended=job.is_terminal,
    )
    paginator = Paginator(
        ImportRowError.objects.filter(job=job).order_by("row_number", "id"), ERRORS_PER_PAGE
    )
    errors_page = paginator.get_page(request.GET.get("page"))
    snapshot = job_snapshot(job)
    from .views_mapping import fix_context

    context = {
        **fix_context(job, list(errors_page), membership.can_operate),
        "membership": membership,
        "org": job.organization,
        "job": snapshot,
        "job_json": json.dumps(snapshot, indent=2, default=str),
        "errors_page": errors_page,
        "can_operate": membership.can_operate,
        "live": live,
    }
    return render(request, "imports/job.html", context)


ACTIONS = {
    "cancel": ("Cancel requested.", services.import_job_cancel),
    "retry": ("Queued again as attempt {attempt}.", services.import_job_retry),
}


@login_required
@require_POST
def job_action(request: HttpRequest, job_id: Any, action: str) -> HttpResponse:
    membership, job = _job_for(request, job_id)
    if not membership.can_operate:
        messages.error(
            request, f"Your role '{membership.role}' can watch jobs but not change them."
        )
        return redirect("job-page", job_id=job.id)
    try:
        if action == "confirm":
            confirmed = services.import_job_confirm(job=job, user=request.user)
            messages.success(request, "The dry run's file is being imported for real.")
            return redirect("job-page", job_id=confirmed.id)
        if action not in ACTIONS:
            raise Http404("No such action.")
        text, service = ACTIONS[action]
        job = service(job=job)
        messages.success(request, text.format(attempt=job.attempt))
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(reverse("job-page", kwargs={"job_id": job.id}))
