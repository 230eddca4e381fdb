"""Reads for purchase orders: templates for the parser, the pipeline counts for the page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from ..models import JobStatus, Organization
from .models import ParsingTemplate, POStatus, PurchaseOrder, WorkflowStage
from .parsing import Template
from .workflow import STAGES


def parsing_templates(*, organization_id: int) -> list[Template]:
    """The organization's active templates as the parser's plain dataclasses."""
    out = []
    for t in ParsingTemplate.objects.filter(
        organization_id=organization_id, active=True
    ).select_related("supplier"):
        out.append(
            Template(
                name=t.name,
                keywords=[str(k) for k in t.keywords or []],
                fields={str(k): str(v) for k, v in (t.fields or {}).items()},
                line_pattern=t.line_pattern,
                decimal_separator=t.decimal_separator,
                date_formats=[str(f) for f in t.date_formats or []],
                supplier=t.supplier.name if t.supplier else "",
                currency=t.currency,
                priority=t.priority,
            )
        )
    return out


def purchase_orders(*, organization: Organization) -> QuerySet[PurchaseOrder]:
    return PurchaseOrder.objects.filter(organization=organization).select_related("job", "supplier")


def with_stages(qs: QuerySet[PurchaseOrder]) -> QuerySet[PurchaseOrder]:
    """Each order with the stage rows of its current run (no outputs: they can be large)."""
    return qs.prefetch_related(
        Prefetch(
            "stages",
            queryset=WorkflowStage.objects.defer("output").order_by("position"),
        )
    )


def current_stages(order: PurchaseOrder) -> list[WorkflowStage]:
    rows = [s for s in order.stages.all() if s.job_id == order.job_id]
    by_name = {s.name: s for s in rows}
    return [
        by_name.get(name) or WorkflowStage(name=name, position=i) for i, name in enumerate(STAGES)
    ]


def pipeline_counts(*, organization: Organization) -> dict[str, Any]:
    """Orders in each stage now, waiting for review, completed and failed today."""
    since = timezone.now() - timedelta(hours=24)
    today_start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    qs = PurchaseOrder.objects.filter(organization=organization)
    running = (
        qs.filter(status=POStatus.PROCESSING, job__status__in=[JobStatus.PROCESSING])
        .values("job__stage")
        .annotate(n=Count("id"))
    )
    by_stage = {name: 0 for name in STAGES}
    for r in running:
        if r["job__stage"] in by_stage:
            by_stage[r["job__stage"]] = r["n"]
    counts = qs.aggregate(
        queued=Count("id", filter=Q(status=POStatus.PROCESSING, job__status=JobStatus.QUEUED)),
        needs_review=Count("id", filter=Q(status=POStatus.NEEDS_REVIEW)),
        completed_today=Count(
            "id", filter=Q(status=POStatus.COMPLETED, updated_at__gte=today_start)
        ),
        failed_today=Count("id", filter=Q(status=POStatus.FAILED, updated_at__gte=today_start)),
        last_24h=Count("id", filter=Q(created_at__gte=since)),
    )
    return {"stages": by_stage, **counts}
