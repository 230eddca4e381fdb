"""Pages for the mapping step, fixing failed rows, and exporting.

All three are plain forms that work without JavaScript; static/js/live.js upgrades them in
place (the mapping step re-renders its preview as drop-downs change, on the dashboard itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from . import exports, fixes, services
from .api_export import export_response
from .mappings import import_preview
from .models import ImportJob, JobKind, JobStatus
from .pagination import whole_number
from .pipeline.validation import FIELDS
from .serializers import job_snapshot
from .tenancy import InvalidOrganization
from .views import _job_for, _membership, _no_organization

FIX_ROWS_PER_PAGE = 50


def _mapping_from_form(request: HttpRequest, header: list[str]) -> dict[str, str | None] | None:
    """The ``col_<i>`` drop-downs as ``{column: field or None}``; None when the form has none
    (first view, or the preset changed: the proposal decides again)."""
    if "col_0" not in request.POST or request.POST.get("preset_changed"):
        return None
    mapping: dict[str, str | None] = {}
    for i, column in enumerate(header):
        if column.strip() and column.strip() not in mapping:
            value = request.POST.get(f"col_{i}", "")
            mapping[column.strip()] = value if value in FIELDS else None
    return mapping


@login_required
def mapping_step(request: HttpRequest, job_id: Any) -> HttpResponse:
    """A staged upload's mapping: the proposal, a drop-down per column, the preview, Import."""
    membership, job = _job_for(request, job_id)
    if job.kind != JobKind.PRODUCT_IMPORT:
        # a purchase order waiting for review is pending too: its document is no product file
        raise Http404("No product import to map.")
    if job.status != JobStatus.PENDING:
        return redirect("job-page", job_id=job.id)
    try:
        header = fixes.job_header(job)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("job-page", job_id=job.id)
    mapping = _mapping_from_form(request, header) if request.method == "POST" else None
    # "none": a person chose no preset, so none is detected either
    chosen_preset = request.POST.get("preset", job.options.get("preset") or "")
    detect_preset = chosen_preset != "none"
    preset = chosen_preset if chosen_preset not in ("", "none") else None
    status, error = 200, ""
    if request.method == "POST" and request.POST.get("action") == "import":
        if not membership.can_operate:
            error, status = (
                f"Your role '{membership.role}' can watch imports but not start one.",
                403,
            )
        else:
            try:
                chosen = mapping if mapping is not None else None
                if chosen is None:
                    preview = import_preview(
                        organization=job.organization,
                        path=Path(job.file.path),
                        filename=job.original_filename,
                        preset=preset,
                        detect_preset=detect_preset,
                    )
                    chosen = preview["mapping"]
                    preset = preview["preset"]
                job = services.import_job_start(
                    job=job, user=request.user, mapping=chosen, preset=preset
                )
            except services.ServiceError as exc:
                error, status = exc.message, exc.status_code
            else:
                messages.success(request, f"'{job.original_filename}' is queued.")
                return redirect("job-page", job_id=job.id)
    try:
        preview = import_preview(
            organization=job.organization,
            path=Path(job.file.path),
            filename=job.original_filename,
            mapping=mapping,
            preset=preset,
            detect_preset=detect_preset,
        )
    except services.ServiceError as exc:
        preview, error, status = None, exc.message, exc.status_code
    context = {
        "membership": membership,
        "org": job.organization,
        "job": job_snapshot(job),
        "preview": preview,
        "columns": (columns := _columns(preview) if preview else []),
        "mapped_columns": [c for c in columns if c["field"]],
        "unmapped_columns": [c for c in columns if not c["field"]],
        "fields": FIELDS,
        "error": error,
    }
    template = (
        "imports/_mapping_step.html" if request.POST.get("partial") else "imports/mapping.html"
    )
    return render(request, template, context, status=status)


def _columns(preview: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per file column: its chosen field, why, and a sample value."""
    explained = {c["column"]: c for c in preview["proposal"]["columns"]}
    first = next((r["values"] for r in preview["rows"]), [])
    out = []
    for i, column in enumerate(preview["header"]):
        why = explained.get(column, {})
        chosen = preview["mapping"].get(column.strip())
        source = why.get("source", "") if why.get("field") == chosen else "you"
        out.append(
            {
                "index": i,
                "name": column,
                "field": chosen or "",
                "source": source if chosen else "",
                "note": why.get("note", ""),
                "sample": first[i] if i < len(first) else "",
            }
        )
    return out


@login_required
@require_POST
def fix_rows(request: HttpRequest, job_id: Any) -> HttpResponse:
    """Import the failed rows a person corrected in the job page's table as a new job."""
    membership, job = _job_for(request, job_id)
    if not membership.can_operate:
        messages.error(
            request, f"Your role '{membership.role}' can watch jobs but not change them."
        )
        return redirect("job-page", job_id=job.id)
    # whole_number, not isdecimal() + int(): "٣" and 5,000 digits were a 500 here
    picked = (whole_number(n) for n in request.POST.getlist("row")[:FIX_ROWS_PER_PAGE])
    numbers = [n for n in picked if n is not None and n < 2**31]
    try:
        header = fixes.job_header(job)
    except services.ServiceError as exc:  # the file is gone: its columns are unknown
        messages.error(request, exc.message)
        return redirect("job-page", job_id=job.id)
    stored = {
        e.row_number: fixes.error_cells(job, e, header)
        for e in job.row_errors.filter(row_number__in=numbers)
    }
    corrected: dict[int, list[str]] = {}
    for number in numbers:
        width = whole_number(request.POST.get(f"w{number}")) or 0
        cells = [request.POST.get(f"r{number}_{i}", "") for i in range(min(width, 1000))]
        if number not in stored:
            continue
        # the form pads a short row to the page's width: as stored, padded alike
        was = stored[number] + [""] * (len(cells) - len(stored[number]))
        if cells != was:
            corrected[number] = cells  # rows left as they were would only fail again
    if not corrected:
        messages.error(request, "Change at least one cell of a failed row, then import it.")
        return redirect("job-page", job_id=job.id)
    try:
        fix_job = fixes.import_fix_create(job=job, user=request.user, rows=corrected)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("job-page", job_id=job.id)
    rows = "row" if len(corrected) == 1 else "rows"
    messages.success(request, f"{len(corrected)} fixed {rows} queued as a new job.")
    return redirect("job-page", job_id=fix_job.id)


def fix_context(job: ImportJob, page_rows: list[Any], can_operate: bool) -> dict[str, Any]:
    """What the job page's fix table needs: the header, each row's cells, what is fixed."""
    if job.kind != "product_import":
        return {"fixable": False}
    try:
        header = fixes.job_header(job)
    except services.ServiceError:
        header = []
    fixed = fixes.fixed_rows(job) if job.is_terminal else set()
    shown = {e.pk: fixes.error_cells(job, e, header) for e in page_rows}
    width = max([len(header), *(len(cells) for cells in shown.values())], default=0)
    columns = header + [f"(extra {i + 1})" for i in range(width - len(header))]
    rows = []
    for error in page_rows:
        cells = shown[error.pk]
        rows.append(
            {
                "number": error.row_number,
                "message": error.message,
                "cells": cells + [""] * (width - len(cells)),
                "width": width,
                "fixed": error.row_number in fixed,
            }
        )
    fix_jobs = list(job.fix_jobs.order_by("created_at").values("id", "status", "original_filename"))
    return {
        "fixable": bool(header) and can_operate and job.is_terminal,
        "fix_columns": columns,
        "fix_rows": rows,
        "fixed_count": len(fixed),
        "fix_jobs": fix_jobs,
    }


@login_required
def export_page(request: HttpRequest) -> HttpResponse:
    """The dashboard's export form: the file itself, or an export job's page when large."""
    try:
        membership = _membership(request)
    except InvalidOrganization as exc:  # a malformed ?organization= was a 500
        return _no_organization(request, str(exc))
    if membership is None:
        return _no_organization(request)
    try:
        response = export_response(request, membership, request.GET)
        if response is not None:
            return response
        options = exports.export_options(request.GET)
        total = exports.export_queryset(
            organization_id=membership.organization_id, filters=options["filters"]
        ).count()
        job = exports.export_job_create(
            organization=membership.organization, user=request.user, options=options, total=total
        )
    except services.ServiceError as exc:  # a bad filter, or Redis down (the job queue)
        messages.error(request, exc.message)
        return redirect("dashboard")
    limit = settings.EXPORT_STREAM_MAX_ROWS
    if getattr(job, "reused", False):
        text = "The same export is already queued or running: here is its job."
    else:
        text = f"{total:,} products are more than {limit:,}: the export runs as a job."
    messages.success(request, text)
    return redirect("job-page", job_id=job.id)
