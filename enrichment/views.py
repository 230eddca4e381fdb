"""Pages: the BOMs page (upload, filter by project), a BOM's page (live progress, start, the line
table, resolve in place, export) and the components page (search, import).

As in ``imports/views.py``: the state is rendered on the server with the stream cursor taken
before it was read; forms post to one service each; ``static/js/bom.js`` keeps a BOM page live
and resolves lines in place, ``static/js/live.js`` the components page's import jobs.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from imports.models import ImportJob, JobKind, Membership
from imports.pagination import whole_number
from imports.serializers import job_snapshot
from imports.services import ServiceError, import_job_cancel
from imports.tenancy import InvalidOrganization, membership_for
from imports.views import live_stream
from realtime.events import bom_topic, org_topic

from . import selectors, services
from .models import Bom, BomLine, Component, Lifecycle, MatchStatus, Project
from .serializers import bom_detail, lines_payload

LINES_PER_PAGE = 100
COMPONENTS_PER_PAGE = 50
SEGMENTS = ("matched", "ambiguous", "not_found", "skipped", "error", "pending")


def _membership(request: HttpRequest) -> Membership | None:
    return membership_for(request.user, request.GET.get("organization"))


def _no_organization(request: HttpRequest, problem: str = "") -> HttpResponse:
    # a malformed ?organization= is the request's fault (400, named); no membership is a 403
    status = 400 if problem else 403
    return render(request, "imports/no_organization.html", {"problem": problem}, status=status)


def _whole_number(raw: str | None, digits: int = 18) -> int | None:
    """An id or number from a form: ASCII digits that fit a bigint, else None."""
    return whole_number(raw, digits=digits)


def _bom_for(request: HttpRequest, bom_id: Any) -> tuple[Membership, Bom]:
    bom = Bom.objects.select_related("organization", "project", "latest_job").filter(pk=bom_id)
    found = bom.first()
    membership = membership_for(request.user, str(found.organization_id)) if found else None
    if found is None or membership is None:
        raise Http404("No such BOM.")  # another tenant's BOM is exactly like a missing one
    return membership, found


@login_required
def boms_page(request: HttpRequest) -> HttpResponse:
    try:
        membership = _membership(request)
    except InvalidOrganization as exc:
        return _no_organization(request, str(exc))
    if membership is None:
        return _no_organization(request)
    org = membership.organization
    error, status = "", 200
    if request.method == "POST":
        if not membership.can_operate:
            error, status = f"Your role '{membership.role}' can watch BOMs but not upload.", 403
        elif request.POST.get("action") == "project":
            try:
                project = services.project_create(
                    organization=org, user=request.user, name=request.POST.get("name", "")
                )
                messages.success(request, f"Project '{project.name}' created.")
                return redirect(f"{request.path}?project={project.id}")
            except ServiceError as exc:
                error, status = exc.message, exc.status_code
        elif "file" not in request.FILES:
            error, status = "Choose a CSV or XLSX BOM to upload.", 400
        else:
            project = None
            asked = request.POST.get("project", "")
            if asked:
                project_id = _whole_number(asked)
                project = Project.objects.filter(organization=org, pk=project_id).first()
            if asked and project is None:
                # as the API answers: a BOM is not stored outside the project asked for
                error, status = f"Project '{asked}' is not one of your organization's.", 400
            else:
                try:
                    bom, problems = services.bom_create(
                        organization=org,
                        user=request.user,
                        upload=request.FILES["file"],
                        name=request.POST.get("name", ""),
                        project=project,
                    )
                except ServiceError as exc:
                    error, status = exc.message, exc.status_code
                else:
                    note = f" ({len(problems)} rows with problems)" if problems else ""
                    messages.success(
                        request, f"BOM '{bom.name}' stored: {bom.line_count} lines{note}."
                    )
                    return redirect("bom-page", bom_id=bom.id)
    projects = list(Project.objects.filter(organization=org).order_by("name"))
    boms = Bom.objects.filter(organization=org).select_related("project", "latest_job")
    selected = request.GET.get("project", "")
    project_id = _whole_number(selected)
    if project_id is not None:
        boms = boms.filter(project_id=project_id)
    page = Paginator(boms.order_by("-created_at"), 50).get_page(request.GET.get("page"))
    counts = selectors.status_counts(bom_ids=[b.id for b in page])
    rows = [
        {
            "bom": b,
            "state": selectors.run_state(b.latest_job),
            "job": b.latest_job,
            "counts": counts[b.id],
        }
        for b in page
    ]
    context = {
        "org": org,
        "membership": membership,
        "projects": projects,
        "selected_project": selected,
        "rows": rows,
        "page": page,
        "error": error,
        "max_lines": settings.BOM_MAX_LINES,
    }
    return render(request, "enrichment/boms.html", context, status=status)


def _segments(counts: dict[str, int], total: int) -> list[dict[str, Any]]:
    return [
        {
            "status": s,
            "label": MatchStatus(s).label,
            "count": counts.get(s, 0),
            "percent": round(counts.get(s, 0) * 100 / total, 2) if total else 0,
        }
        for s in SEGMENTS
    ]


def _kept(bom, job, running: bool, counts: dict[str, int]) -> dict[str, int]:
    """The matched and skipped lines a re-run of the unresolved ones leaves as they are (the
    page's live bar adds the run's own counts to them): those enriched before the run was
    asked for (any of its attempts may have enriched the others), while one runs; else all of
    them (what a run started from the page will leave)."""
    kept = [MatchStatus.MATCHED, MatchStatus.SKIPPED]
    if running and job.options.get("only") == "unresolved":
        rows = (
            BomLine.objects.filter(bom=bom, match_status__in=kept)
            .filter(Q(enriched_at__lt=job.created_at) | Q(enriched_at=None))
            .values_list("match_status")
            .annotate(n=Count("id"))
            .order_by()
        )
        return {**dict.fromkeys(kept, 0), **dict(rows)}
    return {s: counts.get(s, 0) for s in kept}


@login_required
def bom_page(request: HttpRequest, bom_id: Any) -> HttpResponse:
    membership, bom = _bom_for(request, bom_id)
    job = bom.latest_job
    running = job is not None and not job.is_terminal
    # the cursor before the state is read: whatever happens in between is replayed
    live = live_stream(
        _stream_url(bom), bom_topic(bom.id), close_on_terminal=True, ended=not running
    )
    detail = bom_detail(bom)
    qs = BomLine.objects.filter(bom=bom)
    status_filter = request.GET.get("status", "")
    if status_filter in MatchStatus.values:
        qs = qs.filter(match_status=status_filter)
    lifecycle_filter = request.GET.get("lifecycle", "")
    if lifecycle_filter in Lifecycle.values:
        qs = qs.filter(lifecycle=lifecycle_filter)
    page = Paginator(qs.order_by("line_number"), LINES_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "org": bom.organization,
        "membership": membership,
        "can_operate": membership.can_operate,
        "bom": bom,
        "detail": detail,
        "state": selectors.run_state(job),
        "job": job_snapshot(job) if job else None,
        "running": running,
        "segments": _segments(detail["counts"], bom.line_count),
        "kept": _kept(bom, job, running, detail["counts"]),
        "lines": lines_payload(bom, list(page)),
        "page": page,
        "status_filter": status_filter,
        "lifecycle_filter": lifecycle_filter,
        "statuses": MatchStatus.choices,
        "lifecycles": Lifecycle.choices,
        "priorities": range(10, 0, -1),
        "live": live,
        "live_json": json.dumps({"bom_id": bom.id, "job_id": str(job.id) if job else None}),
    }
    return render(request, "enrichment/bom.html", context)


def _stream_url(bom: Bom) -> str:
    return f"/api/v1/enrichment/stream/{bom.id}?organization={bom.organization_id}"


@login_required
@require_POST
def bom_action(request: HttpRequest, bom_id: Any, action: str) -> HttpResponse:
    membership, bom = _bom_for(request, bom_id)
    if not membership.can_operate:
        messages.error(
            request, f"Your role '{membership.role}' can watch BOMs but not change them."
        )
        return redirect("bom-page", bom_id=bom.id)
    try:
        if action == "start":
            priority = _whole_number(request.POST.get("priority", "5"), digits=3)
            job = services.enrichment_start(
                bom=bom,
                user=request.user,
                priority=0 if priority is None else priority,
                only="unresolved" if request.POST.get("only") == "unresolved" else None,
            )
            messages.success(request, f"Enrichment queued on the {job.priority} queue.")
        elif action == "resolve":
            line_id = _whole_number(request.POST.get("line"))
            line = BomLine.objects.filter(bom=bom, pk=line_id).first() if line_id else None
            component = _whole_number(request.POST.get("component"))
            if line is None or component is None:
                raise Http404("No such line.")
            services.line_resolve(line=line, component_id=component, user=request.user)
            messages.success(request, f"Line {line.line_number} resolved.")
        elif action == "cancel":
            # the run the page showed: another may have started since (a stale page)
            job = bom.latest_job
            if job is None or job.is_terminal:
                messages.error(request, "No run of this BOM is queued or running.")
            elif str(job.id) != request.POST.get("job", ""):
                messages.error(
                    request, "The run this page showed has ended; here is the BOM as it is now."
                )
            else:
                job = import_job_cancel(job=job)
                messages.success(
                    request,
                    "Run cancelled."
                    if job.is_terminal
                    else "Cancel requested: the run stops after the chunk it is on.",
                )
        else:
            raise Http404("No such action.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("bom-page", bom_id=bom.id)


@login_required
def components_page(request: HttpRequest) -> HttpResponse:
    try:
        membership = _membership(request)
    except InvalidOrganization as exc:
        return _no_organization(request, str(exc))
    if membership is None:
        return _no_organization(request)
    org = membership.organization
    error, status = "", 200
    if request.method == "POST":
        if not membership.can_operate:
            error, status = f"Your role '{membership.role}' can search but not import.", 403
        elif "file" not in request.FILES:
            error, status = "Choose a CSV or XLSX component file to import.", 400
        else:
            try:
                job = services.component_import_create(
                    organization=org, user=request.user, upload=request.FILES["file"]
                )
            except ServiceError as exc:
                error, status = exc.message, exc.status_code
            else:
                messages.success(request, f"'{job.original_filename}' is queued.")
                return redirect("job-page", job_id=job.id)
    live = live_stream(f"/api/v1/realtime/events?organization={org.id}", org_topic(org.id))
    from .matching import manufacturer_key, normalize_mpn

    qs = Component.objects.filter(organization=org)
    mpn, maker = request.GET.get("mpn", "").strip(), request.GET.get("manufacturer", "").strip()
    lifecycle = request.GET.get("lifecycle", "")
    if mpn:
        qs = qs.filter(mpn_norm__startswith=normalize_mpn(mpn))
    if maker:
        aliases = selectors.alias_map(organization_id=org.id)
        key = manufacturer_key(maker)
        qs = qs.filter(manufacturer_key=manufacturer_key(aliases.get(key, maker)))
    if lifecycle in Lifecycle.values:
        qs = qs.filter(lifecycle=lifecycle)
    page = Paginator(qs.order_by("mpn_norm", "id"), COMPONENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    jobs = [
        job_snapshot(j)
        for j in ImportJob.objects.filter(organization=org, kind=JobKind.COMPONENT_IMPORT)[:10]
    ]
    context = {
        "org": org,
        "membership": membership,
        "page": page,
        "mpn": mpn,
        "manufacturer": maker,
        "lifecycle": lifecycle,
        "lifecycles": Lifecycle.choices,
        "jobs": jobs,
        "blank_job": {"id": "", "status": "queued", "progress": 0, "error_count": 0},
        "error": error,
        "live": live,
        "catalogue_version": selectors.catalogue_version(organization_id=org.id),
        "max_upload_mb": settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024),
    }
    return render(request, "enrichment/components.html", context, status=status)
