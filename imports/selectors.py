"""Reads: the import-status summary and friends."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce

from .models import ImportJob, JobKind, JobStatus, Organization

SUMMARY_ERRORS_PER_JOB = 10


def import_status_summary(*, organization: Organization, limit: int = 5) -> dict[str, Any]:
    """Counts by status, total row errors, average duration and the newest ``limit`` jobs.

    One aggregate query plus one for the jobs (none when ``limit`` is 0).
    """
    qs = ImportJob.objects.filter(organization=organization, kind=JobKind.PRODUCT_IMPORT)
    counts = qs.aggregate(
        total_jobs=Count("id"),
        errors=Coalesce(Sum("error_count"), 0),
        avg_duration=Avg(
            ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
            filter=Q(status=JobStatus.COMPLETED),
        ),
        **{s.value: Count("id", filter=Q(status=s.value)) for s in JobStatus},
    )
    avg = counts.pop("avg_duration")
    last_jobs = []
    if limit:
        for job in qs.order_by("-created_at")[:limit].only(
            "id",
            "original_filename",
            "status",
            "total_rows",
            "processed_rows",
            "error_count",
            "errors",
            "created_at",
            "updated_at",
        ):
            last_jobs.append(
                {
                    "id": str(job.id),
                    "original_filename": job.original_filename,
                    "status": job.status,
                    "total_rows": job.total_rows,
                    "processed_rows": job.processed_rows,
                    "error_count": job.error_count,
                    "errors": job.errors[:SUMMARY_ERRORS_PER_JOB],
                    "created_at": job.created_at.isoformat(),
                    "updated_at": job.updated_at.isoformat(),
                }
            )
    return {
        "total_jobs": counts["total_jobs"],
        "pending": counts["pending"],
        "queued": counts["queued"],
        "processing": counts["processing"],
        "completed": counts["completed"],
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "errors": counts["errors"],
        "avg_duration_seconds": round(avg.total_seconds(), 3) if avg is not None else None,
        "last_jobs": last_jobs,
    }
