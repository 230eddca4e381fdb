"""The job snapshot: one shape for the API, the admin and every event."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import serializers

from .models import ImportJob, Product
from .pipeline.validation import FIELDS


class ImportJobSerializer(serializers.ModelSerializer):
    mode = serializers.CharField(read_only=True)
    dry_run = serializers.BooleanField(read_only=True)
    atomic = serializers.BooleanField(read_only=True)
    batch_size = serializers.IntegerField(read_only=True)
    rows_per_second = serializers.SerializerMethodField()
    eta_seconds = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    organization = serializers.PrimaryKeyRelatedField(read_only=True)
    source_job = serializers.PrimaryKeyRelatedField(read_only=True)
    fixes = serializers.PrimaryKeyRelatedField(read_only=True)
    preset = serializers.SerializerMethodField()
    created_by = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "organization",
            "kind",
            "status",
            "stage",
            "stages",
            "progress",
            "total_rows",
            "processed_rows",
            "created_rows",
            "updated_rows",
            "unchanged_rows",
            "skipped_rows",
            "failed_rows",
            "error_count",
            "errors",
            "warnings",
            "error_message",
            "original_filename",
            "file_size",
            "priority",
            "mode",
            "dry_run",
            "atomic",
            "batch_size",
            "attempt",
            "source_job",
            "fixes",
            "preset",
            "created_by",
            "rq_job_id",
            "rows_per_second",
            "eta_seconds",
            "duration_seconds",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "heartbeat_at",
        ]
        read_only_fields = fields

    def get_preset(self, job: ImportJob) -> str | None:
        """The store preset the file was read with (shopify, woocommerce, …), if any."""
        return job.options.get("preset") or None

    def get_rows_per_second(self, job: ImportJob) -> float | None:
        if not job.started_at or not job.processed_rows:
            return None
        end = job.finished_at or timezone.now()
        elapsed = (end - job.started_at).total_seconds()
        return round(job.processed_rows / elapsed, 1) if elapsed > 0 else None

    def get_eta_seconds(self, job: ImportJob) -> float | None:
        if job.status != "processing" or not job.total_rows:
            return None
        rate = self.get_rows_per_second(job)
        if not rate:
            return None
        return round(max(job.total_rows - job.processed_rows, 0) / rate, 1)


def job_snapshot(job: ImportJob) -> dict[str, Any]:
    return dict(ImportJobSerializer(job).data)


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", *FIELDS, "created_at", "updated_at"]
        read_only_fields = fields
