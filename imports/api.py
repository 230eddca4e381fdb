"""REST API for product imports, jobs of every kind, and products."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from redis.exceptions import RedisError
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.body_limit import body_limit
from realtime.events import job_topic
from realtime.log import last_event

from . import exports, selectors, services
from .models import ImportJob, ImportRowError, JobKind, JobStatus, Product, ProductStatus
from .pagination import whole_number
from .serializers import ImportJobSerializer, ImportRowErrorSerializer, ProductSerializer
from .tenancy import IsMember, request_membership


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .csv, .tsv, .txt or .xlsx product file.")
    mode = serializers.CharField(required=False, default="upsert", help_text="create|update|upsert")
    dry_run = serializers.BooleanField(required=False, default=False)
    atomic = serializers.BooleanField(required=False, default=False)
    priority = serializers.CharField(
        required=False, default="default", help_text="high|default|low"
    )
    batch_size = serializers.IntegerField(required=False, allow_null=True, default=None)
    mapping = serializers.JSONField(
        required=False,
        default=None,
        help_text='Which column feeds which field: {"column": "field" or null}, as JSON. '
        "Without it the proposal is used when it is confident.",
    )
    preset = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="shopify|woocommerce|google_merchant_center|intake (detected when omitted)",
    )


def _mapping_of(data: dict[str, Any]) -> dict[str, str | None] | None:
    from .pipeline.mapping import MappingError, parse_mapping

    try:
        return parse_mapping(data.get("mapping"))
    except MappingError as exc:
        raise ValidationError({"mapping": str(exc)}) from exc


def _job_or_404(request: Request, job_id: Any, kind: str | None = None) -> ImportJob:
    org = request_membership(request).organization
    qs = ImportJob.objects.filter(organization=org)
    if kind:
        qs = qs.filter(kind=kind)
    job = qs.filter(pk=job_id).first()  # the URL's uuid converter already refused non-UUIDs
    if job is None:
        raise NotFound("No such job.")
    return job


def _job_response(
    job: ImportJob, code: int = status.HTTP_200_OK, *, under: str = "products/import"
) -> Response:
    response = Response(ImportJobSerializer(job).data, status=code)
    if code == status.HTTP_202_ACCEPTED:
        response["Location"] = f"/api/v1/{under}/{job.id}"
    return response


class ProductImportView(APIView):
    permission_classes = [IsMember]
    parser_classes = [MultiPartParser]

    @extend_schema(request=ImportUploadSerializer, responses={202: ImportJobSerializer})
    def post(self, request: Request) -> Response:
        # config.body_limit refuses a larger body as it arrives (daphne, ASGI); this is for a
        # server without it (WSGI)
        length = whole_number(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > body_limit():
            limit = settings.IMPORT_MAX_UPLOAD_BYTES / (1024 * 1024)
            return Response(
                {"detail": f"File is larger than the {limit:g} MB upload limit."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        membership = request_membership(request)
        form = ImportUploadSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        data = form.validated_data
        job = services.import_job_create(
            organization=membership.organization,
            user=request.user,
            upload=data["file"],
            mode=data["mode"],
            dry_run=data["dry_run"],
            atomic=data["atomic"],
            priority=data["priority"],
            batch_size=data["batch_size"],
            mapping=_mapping_of(data),
            preset=data["preset"] or None,
        )
        return _job_response(job, status.HTTP_202_ACCEPTED)


class ImportStatusView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 0, "maximum": 50},
                description="0 to 50, default 5",
            )
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        limit = parse_limit(request.query_params.get("limit"))
        org = request_membership(request).organization
        return Response(selectors.import_status_summary(organization=org, limit=limit))


def parse_limit(raw: str | None, default: int = 5, maximum: int = 50) -> int:
    if raw in (None, ""):
        return default
    value = whole_number(raw)
    if value is None:
        raise ValidationError({"limit": f"limit must be a whole number from 0 to {maximum}."})
    if not 0 <= value <= maximum:
        raise ValidationError({"limit": f"limit must be from 0 to {maximum} (got {value})."})
    return value


class ImportJobDetailView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: ImportJobSerializer})
    def get(self, request: Request, job_id: str) -> Response:
        return _job_response(_job_or_404(request, job_id, JobKind.PRODUCT_IMPORT))


class ImportJobActionView(APIView):
    """Cancel, retry or confirm a product import (``products/import/<id>/…``), or cancel or
    retry a job of any kind (``jobs/<id>/…``, ``kind`` None): each kind retries its own way
    (``services.register_retry``)."""

    permission_classes = [IsMember]
    action = ""
    kind: str | None = JobKind.PRODUCT_IMPORT

    @extend_schema(request=None, responses={200: ImportJobSerializer, 202: ImportJobSerializer})
    def post(self, request: Request, job_id: str) -> Response:
        job = _job_or_404(request, job_id, self.kind)
        under = "products/import" if self.kind else "jobs"
        if self.action == "cancel":
            return _job_response(services.import_job_cancel(job=job))
        if self.action == "retry":
            retried = services.import_job_retry(job=job)
            return _job_response(retried, status.HTTP_202_ACCEPTED, under=under)
        confirmed = services.import_job_confirm(job=job, user=request.user)
        return _job_response(confirmed, status.HTTP_202_ACCEPTED)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def escape_cell(value: Any) -> str:
    """Defuse spreadsheet formula injection: a cell that starts like a formula is quoted, also
    after leading spaces (a spreadsheet that trims them on import reads `` =HYPERLINK(…)`` as
    a formula). Row errors quote the file's cells as they were, untrimmed."""
    text = "" if value is None else str(value)
    return "'" + text if text.lstrip(" ").startswith(FORMULA_PREFIXES) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def error_csv_rows(job: ImportJob) -> Iterator[str]:
    header: list[str] = []
    if job.file:
        try:
            from .pipeline.readers import open_source

            header = open_source(Path(job.file.path), job.original_filename).header
        except Exception:  # the file may be unreadable: that is often why the job failed
            header = []
    writer = csv.writer(_Echo())
    yield "\ufeff"  # so Excel opens it as UTF-8
    yield writer.writerow(["row", "error", *[escape_cell(h) for h in header]])
    qs = job.row_errors.order_by("row_number", "id").values_list("row_number", "message", "values")
    for row_number, message, values in qs.iterator(chunk_size=2000):
        yield writer.writerow([row_number, escape_cell(message), *map(escape_cell, values)])


class ImportJobErrorsCsvView(APIView):
    """Every row error of a job's latest attempt as CSV, with the file's own columns (a
    product import's, or with ``kind`` None any job's: a component import's too)."""

    permission_classes = [IsMember]
    kind: str | None = JobKind.PRODUCT_IMPORT

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        job = _job_or_404(request, job_id, self.kind)
        stem = Path(job.original_filename or "import").stem
        # in blocks, and under ASGI a block at a time: a job may hold millions of row errors
        rows = exports.in_blocks(error_csv_rows(job))
        response = StreamingHttpResponse(
            exports.streamed(request, rows), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{stem}-errors.csv"'
        return response


class ImportJobErrorListView(generics.ListAPIView):
    """Every row error of a job's latest attempt, a page at a time, in row order."""

    permission_classes = [IsMember]
    serializer_class = ImportRowErrorSerializer
    kind: str | None = JobKind.PRODUCT_IMPORT

    def get_queryset(self) -> QuerySet[ImportRowError]:
        job = _job_or_404(self.request, self.kwargs["job_id"], self.kind)
        return job.row_errors.order_by("row_number", "id")


class JobListView(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = ImportJobSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[c.value for c in JobStatus]),
            OpenApiParameter("kind", str, enum=[c.value for c in JobKind]),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[ImportJob]:
        org = request_membership(self.request).organization
        qs = ImportJob.objects.filter(organization=org).order_by("-created_at")
        params = self.request.query_params
        for field, choices in (
            ("status", ImportJob.status.field.choices),
            ("kind", ImportJob.kind.field.choices),
        ):
            value = params.get(field)
            if value:
                allowed = [c[0] for c in choices]
                if value not in allowed:
                    raise ValidationError(
                        {field: f"Unknown {field} '{value}': use one of {', '.join(allowed)}."}
                    )
                qs = qs.filter(**{field: value})
        return qs


class JobDetailView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: ImportJobSerializer})
    def get(self, request: Request, job_id: str) -> Response:
        # A running job's last published snapshot is newer than its row (progress is saved
        # less often than it is published). An ended job's row is its truth: an event can be
        # lost (publishing never fails a job) or a stale one come last, and Redis down must
        # not make this a 500.
        job = _job_or_404(request, job_id)
        if job.is_terminal:
            return _job_response(job)
        try:
            event = last_event(job_topic(str(job.id)))
        except RedisError:
            event = None
        snapshot = (event or {}).get("job")
        if (
            snapshot
            and snapshot.get("organization") == job.organization_id
            and snapshot.get("attempt", job.attempt) == job.attempt
        ):
            return Response(snapshot)
        return _job_response(job)


class ProductListView(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = ProductSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("sku", {"type": "string", "maxLength": 64}),
            OpenApiParameter("status", str, enum=[c.value for c in ProductStatus]),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Product]:
        org = request_membership(self.request).organization
        qs = Product.objects.filter(organization=org).order_by("sku")
        params = self.request.query_params
        for name in ("sku", "status"):
            value = params.get(name) or ""
            if "\x00" in value or len(value) > 64:
                # no SKU or status holds a NUL (PostgreSQL refuses one in text) or is longer
                return qs.none()
        if params.get("sku"):
            qs = qs.filter(sku=params["sku"])
        if params.get("status"):
            qs = qs.filter(status=params["status"])
        return qs
