"""Reads: aliases, a BOM's state and counts, components for the API."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q

from imports.models import ImportJob, JobKind, JobStatus

from .models import Bom, BomLine, Catalogue, Component, ManufacturerAlias

ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING)
COUNTED = ("matched", "ambiguous", "not_found", "skipped", "error", "pending")


def alias_map(*, organization_id: int) -> dict[str, str]:
    """Alias key → canonical name: the built-in list (``aliases.BUILT_IN``, as edited in the
    admin), overridden by the organization's own."""
    from .aliases import BUILT_IN
    from .matching import manufacturer_key

    out: dict[str, str] = {}
    for canonical, names in BUILT_IN.items():  # also when the table was emptied
        for name in (canonical, *names):
            out.setdefault(manufacturer_key(name), canonical)
    rows = ManufacturerAlias.objects.filter(
        Q(organization__isnull=True) | Q(organization_id=organization_id)
    ).values_list("organization_id", "alias_key", "canonical")
    for _org, key, canonical in sorted(rows, key=lambda r: r[0] is not None):
        out[key] = canonical
    return out


def catalogue_version(*, organization_id: int) -> int:
    return (
        Catalogue.objects.filter(organization_id=organization_id)
        .values_list("version", flat=True)
        .first()
        or 0
    )


def active_run(*, bom: Bom) -> ImportJob | None:
    """The BOM's enrichment job that is queued or running, if any."""
    return (
        ImportJob.objects.filter(
            organization_id=bom.organization_id,
            kind=JobKind.BOM_ENRICHMENT,
            options__bom_id=bom.id,
            status__in=ACTIVE_STATUSES,
        )
        .order_by("-created_at")
        .first()
    )


def run_state(job: ImportJob | None) -> dict[str, Any]:
    """The ``state`` of an enrichment event, from the job row (its counters hold the run)."""
    if job is None:
        return {
            "percent_complete": 0,
            "total_items": 0,
            "enriched_items": 0,
            "failed_items": 0,
            "matched": 0,
            "ambiguous": 0,
            "not_found": 0,
            "skipped": 0,
        }
    counts = job.options.get("counts", {})
    total = job.total_rows or 0
    done = job.processed_rows
    percent = (
        100 if job.status == JobStatus.COMPLETED else (int(done * 100 / total) if total else 0)
    )
    return {
        "percent_complete": min(percent, 100),
        "total_items": total,
        "enriched_items": done,
        "failed_items": counts.get("error", 0),
        "matched": counts.get("matched", 0),
        "ambiguous": counts.get("ambiguous", 0),
        "not_found": counts.get("not_found", 0),
        "skipped": counts.get("skipped", 0),
    }


def component_brief(c: Component | dict[str, Any]) -> dict[str, Any]:
    """The ``component`` object of a line: ``{id, manufacturer, mpn, lifecycle, stock,
    unit_price, currency, datasheet_url}``."""
    get = c.get if isinstance(c, dict) else lambda k: getattr(c, k)
    price = get("unit_price")
    return {
        "id": get("id"),
        "manufacturer": get("manufacturer"),
        "mpn": get("mpn"),
        "lifecycle": get("lifecycle"),
        "stock": get("stock"),
        "unit_price": None if price is None else str(price),
        "currency": get("currency"),
        "datasheet_url": get("datasheet_url"),
    }


BRIEF_FIELDS = (
    "id",
    "manufacturer",
    "mpn",
    "lifecycle",
    "stock",
    "unit_price",
    "currency",
    "datasheet_url",
)


def components_by_id(*, organization_id: int, ids: set[int]) -> dict[int, dict[str, Any]]:
    """Briefs of the given components, in one query."""
    if not ids:
        return {}
    rows = Component.objects.filter(organization_id=organization_id, id__in=ids).values(
        *BRIEF_FIELDS
    )
    return {row["id"]: component_brief(row) for row in rows}


def status_counts(*, bom_ids: list[int]) -> dict[int, dict[str, int]]:
    """Each BOM's lines by match status, now (every run's outcome and every resolution, not
    the latest run's counts alone: a re-run of the unresolved lines counts only those), in one
    grouped read of the (BOM, status) index."""
    out: dict[int, dict[str, int]] = {i: dict.fromkeys(COUNTED, 0) for i in bom_ids}
    rows = (
        BomLine.objects.filter(bom_id__in=bom_ids)
        .values_list("bom_id", "match_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for bom_id, status, n in rows:
        out[bom_id][status] = n
    return out
