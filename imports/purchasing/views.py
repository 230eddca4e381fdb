"""Pages: the purchase-orders page and an order's page (server-rendered, live with JS).

Like the import dashboard (imports/views.py), each page takes its stream cursor before it reads
the state it renders, so static/js/live.js resumes exactly where the HTML ends. Upload, review
and retry are plain form posts calling one service each.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from realtime.events import job_topic, org_topic

from ..models import JobKind, Membership
from ..services import ServiceError
from ..tenancy import InvalidOrganization, membership_for
from ..views import live_stream, recent_activity
from . import selectors, services
from .models import POStatus, PurchaseOrder, PurchaseOrderLine, StageStatus
from .parsing import ParsedOrder
from .parsing.document import HEADER_FIELDS, REQUIRED_FIELDS
from .serializers import PurchaseOrderSerializer
from .workflow import STAGE_LABELS, STAGES

ACTIVE_ORDERS = 20
RECENT_ORDERS = 20
ACTIVITY_ENTRIES = 60
LINES_PER_PAGE = 100
REVIEW_LINES = 50
ACTIVITY_TYPES = frozenset({"workflow.stage", "workflow.completion", "workflow.error"})


class UploadForm(forms.Form):
    file = forms.FileField()


def _membership(request: HttpRequest) -> Membership | None:
    return membership_for(request.user, request.GET.get("organization"))


def stage_bar(order: PurchaseOrder) -> list[dict[str, Any]]:
    """The six segments of an order's stage bar."""
    segments = []
    for row in selectors.current_stages(order):
        status = row.status
        if order.status == POStatus.NEEDS_REVIEW and row.name == "database_save":
            status = "waiting"
        segments.append(
            {
                "name": row.name,
                "label": STAGE_LABELS[row.name],
                "status": status,
                "message": row.error or row.message,
            }
        )
    return segments


def _activity(org_id: int) -> list[dict[str, Any]]:
    events = recent_activity(
        org_topic(org_id),
        limit=ACTIVITY_ENTRIES * 3,
        skip_types=frozenset({"job.progress", "workflow.progress", "job.stage", "job.started"}),
    )
    out = []
    for e in events:
        job = e.get("job") or {}
        if job.get("kind") != JobKind.PURCHASE_ORDER:
            continue
        if e.get("status") == "started":
            continue  # the stage bars show what runs; the feed keeps what happened
        if e.get("type") in ACTIVITY_TYPES or e.get("type") in ("job.completed", "job.failed"):
            out.append(e)
    return out[:ACTIVITY_ENTRIES]


@login_required
def purchase_orders_page(request: HttpRequest) -> HttpResponse:
    try:
        membership = _membership(request)
    except InvalidOrganization as exc:  # a malformed ?organization= was a 500
        return render(request, "imports/no_organization.html", {"problem": str(exc)}, status=400)
    if membership is None:
        return render(request, "imports/no_organization.html", status=403)
    org = membership.organization
    upload_error, code = "", 200
    if request.method == "POST":
        if not membership.can_operate:
            upload_error = f"Your role '{membership.role}' can watch orders but not upload them."
            code = 403
        else:
            form = UploadForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    order = services.purchase_order_create(
                        organization=org, user=request.user, upload=form.cleaned_data["file"]
                    )
                except ServiceError as exc:
                    upload_error, code = exc.message, exc.status_code
                else:
                    messages.success(request, f"'{order.original_filename}' is queued.")
                    return redirect("po-order-page", order_id=order.id)
            else:
                upload_error, code = "Choose a purchase-order file to upload.", 400
    live = live_stream(
        f"/api/v1/realtime/events?summary=1&limit=0&poll_interval=1&organization={org.id}",
        org_topic(org.id),
    )
    base = selectors.with_stages(selectors.purchase_orders(organization=org))
    active = list(
        base.filter(status__in=[POStatus.PROCESSING, POStatus.NEEDS_REVIEW])[:ACTIVE_ORDERS]
    )
    recent = list(base.exclude(status__in=[POStatus.PROCESSING])[:RECENT_ORDERS])
    context = {
        "membership": membership,
        "org": org,
        "pipeline": selectors.pipeline_counts(organization=org),
        "stage_names": [(n, STAGE_LABELS[n]) for n in STAGES],
        "active": [{"order": o, "bar": stage_bar(o)} for o in active],
        "recent": [{"order": o, "bar": stage_bar(o)} for o in recent],
        "activity": _activity(org.id),
        "live": live,
        "upload_error": upload_error,
        "max_upload_mb": settings.PO_MAX_UPLOAD_BYTES // (1024 * 1024),
    }
    return render(request, "purchasing/orders.html", context, status=code)


def _order_for(request: HttpRequest, order_id: int) -> tuple[Membership, PurchaseOrder]:
    order = (
        selectors.with_stages(
            PurchaseOrder.objects.select_related("job", "supplier", "organization")
        )
        .filter(pk=order_id)
        .first()
    )
    membership = membership_for(request.user, str(order.organization_id)) if order else None
    if order is None or membership is None:
        raise Http404("No such purchase order.")  # another tenant's is exactly like a missing one
    return membership, order


def header_rows(order: PurchaseOrder, threshold: float) -> list[dict[str, Any]]:
    values = {
        "po_number": order.po_number,
        "supplier": order.supplier.name if order.supplier else order.supplier_name,
        "order_date": order.order_date,
        "expected_date": order.expected_date,
        "currency": order.currency,
        "subtotal": order.subtotal,
        "tax": order.tax,
        "total": order.total,
    }
    rows = []
    for name in HEADER_FIELDS:
        conf = order.field_confidence.get(name) or {}
        score = conf.get("score")
        rows.append(
            {
                "name": name,
                "label": name.replace("_", " ").capitalize().replace("Po ", "PO "),
                "value": values[name],
                "input": "" if values[name] is None else str(values[name]),
                "score": score,
                "reasons": conf.get("reasons", []),
                "weak": score is not None and score < threshold,
                "required": name in REQUIRED_FIELDS,
            }
        )
    return rows


@login_required
def order_page(request: HttpRequest, order_id: int) -> HttpResponse:
    membership, order = _order_for(request, order_id)
    job = order.job
    live = live_stream(
        f"/api/v1/jobs/{job.id}/events?organization={order.organization_id}",
        job_topic(job.id),
        close_on_terminal=True,
        ended=job.is_terminal,
    )
    stages = selectors.current_stages(order)
    saved_lines = order.lines.select_related("product").order_by("line_number")
    parsed_lines: list[Any] = []
    review_lines: list[Any] = []
    if order.status == POStatus.NEEDS_REVIEW or not saved_lines.exists():
        output = next((s for s in order.stages.all() if s.name == "parsing"), None)
        if output is not None and output.status == StageStatus.COMPLETED:
            parsed = ParsedOrder.from_json(
                type(output).objects.filter(pk=output.pk).values_list("output", flat=True)[0]
            )
            parsed_lines = parsed.lines
            review_lines = sorted(parsed.lines, key=lambda ln: ln.confidence)[:REVIEW_LINES]
            review_lines.sort(key=lambda ln: ln.line_number)
    lines_page = Paginator(parsed_lines or saved_lines, LINES_PER_PAGE)
    context = {
        "membership": membership,
        "org": order.organization,
        "order": order,
        "job": job,
        "header": header_rows(order, settings.PO_MIN_CONFIDENCE),
        "threshold": settings.PO_MIN_CONFIDENCE,
        "stages": stages,
        "stage_labels": STAGE_LABELS,
        "bar": stage_bar(order),
        "lines_page": lines_page.get_page(request.GET.get("page")),
        "lines_are_parsed": bool(parsed_lines),
        "review_lines": review_lines,
        "deliveries": order.deliveries.select_related("batch").order_by("-id")[:100],
        "can_operate": membership.can_operate,
        "live": live,
        "order_json": json.dumps(PurchaseOrderSerializer(order).data, indent=2, default=str),
    }
    return render(request, "purchasing/order.html", context)


def _review_input(request: HttpRequest, order: PurchaseOrder) -> tuple[dict, list]:
    fields = {}
    for name in HEADER_FIELDS:
        key = f"field-{name}"
        if key in request.POST:
            fields[name] = request.POST[key]
    lines: dict[int, dict[str, Any]] = {}
    for key, value in request.POST.items():
        parts = key.split("-", 2)
        if (
            len(parts) == 3
            and parts[0] == "line"
            and parts[1].isascii()
            and parts[1].isdecimal()
            and len(parts[1]) <= 9  # int() refuses 4,300 digits and more: a 500
        ):
            number = int(parts[1])
            lines.setdefault(number, {"line_number": number})[parts[2]] = value
    return fields, list(lines.values())


@login_required
@require_POST
def order_review(request: HttpRequest, order_id: int) -> HttpResponse:
    membership, order = _order_for(request, order_id)
    if not membership.can_operate:
        messages.error(request, f"Your role '{membership.role}' can watch orders but not review.")
        return redirect("po-order-page", order_id=order.id)
    fields, lines = _review_input(request, order)
    try:
        services.purchase_order_review(order=order, user=request.user, fields=fields, lines=lines)
        messages.success(request, "Reviewed: the workflow goes on from saving the order.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("po-order-page", order_id=order.id)


@login_required
@require_POST
def order_retry(request: HttpRequest, order_id: int) -> HttpResponse:
    membership, order = _order_for(request, order_id)
    if not membership.can_operate:
        messages.error(request, f"Your role '{membership.role}' can watch orders but not retry.")
        return redirect("po-order-page", order_id=order.id)
    try:
        services.purchase_order_retry(order=order)
        messages.success(request, "Queued again: the workflow resumes at the failed stage.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("po-order-page", order_id=order.id)


@login_required
def line_image(request: HttpRequest, order_id: int, line_number: int, kind: str) -> HttpResponse:
    """A line's stored image or thumbnail, for members of the order's organization only (media
    files are not served publicly: a supplier's images stay within the tenant)."""
    _membership_unused, order = _order_for(request, order_id)
    line = PurchaseOrderLine.objects.filter(order=order, line_number=line_number).first()
    stored = (
        getattr(line, kind, None) if line is not None and kind in ("image", "thumbnail") else None
    )
    if not stored:
        raise Http404("No such image.")
    try:
        handle = stored.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The image is no longer stored.") from exc
    response = FileResponse(handle, content_type=_content_type(stored.name))
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _content_type(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {
        "png": "image/png",
        "jpg": "image/jpeg",
        "gif": "image/gif",
        "webp": "image/webp",
    }.get(suffix, "application/octet-stream")
