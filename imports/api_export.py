"""REST API for exporting products: streamed when small, an export job when large."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import exports
from .api import _job_or_404, _job_response
from .models import JobKind, JobStatus, Membership, ProductStatus
from .serializers import ImportJobSerializer
from .tenancy import IsMember, request_membership


def export_response(
    request: Request | object, membership: Membership, params: dict
) -> StreamingHttpResponse | None:
    """The streamed export, or None when it is too large and must run as a job."""
    options = exports.export_options(params)
    org = membership.organization
    qs = exports.export_queryset(organization_id=org.id, filters=options["filters"])
    if qs.count() > settings.EXPORT_STREAM_MAX_ROWS:
        return None
    content = exports.streamed(request, exports.export_stream(organization=org, options=options))
    response = StreamingHttpResponse(content, content_type=exports.CONTENT_TYPES[options["format"]])
    name = exports.export_filename(options, org)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Accel-Buffering"] = "no"
    return response


def download_response(request: object, path: Path, filename: str) -> StreamingHttpResponse:
    content = exports.streamed(request, exports.file_blocks(path))
    suffix = path.suffix.lstrip(".")
    response = StreamingHttpResponse(
        content, content_type=exports.CONTENT_TYPES.get(suffix, "application/octet-stream")
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Length"] = str(path.stat().st_size)
    return response


class _FormatIsOurs(DefaultContentNegotiation):
    """``?format=`` names the export's file format here, not a DRF renderer: JSON answers
    (202, 4xx) use the first renderer."""

    def select_renderer(self, request, renderers, format_suffix=None):  # type: ignore[no-untyped-def]
        return renderers[0], renderers[0].media_type


class ProductExportView(APIView):
    permission_classes = [IsMember]
    content_negotiation_class = _FormatIsOurs

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format", str, enum=list(exports.FORMATS), description="csv (default) or xlsx"
            ),
            OpenApiParameter(
                "preset", str, enum=list(exports.LAYOUTS), description="intake (default)"
            ),
            # PostgreSQL text holds no NUL: such a SKU is a 400
            OpenApiParameter("sku", {"type": "string", "maxLength": 64, "pattern": r"^[^\x00]*$"}),
            OpenApiParameter("status", str, enum=list(ProductStatus.values)),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, exports.CONTENT_TYPES["xlsx"]): OpenApiTypes.BINARY,
            (202, "application/json"): ImportJobSerializer,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse | Response:
        membership = request_membership(request)
        response = export_response(request, membership, request.query_params)
        if response is not None:
            return response
        options = exports.export_options(request.query_params)
        total = exports.export_queryset(
            organization_id=membership.organization_id, filters=options["filters"]
        ).count()
        job = exports.export_job_create(
            organization=membership.organization, user=request.user, options=options, total=total
        )
        resp = _job_response(job, status.HTTP_202_ACCEPTED)
        resp["Location"] = f"/api/v1/jobs/{job.id}"
        return resp


class ExportDownloadView(APIView):
    permission_classes = [IsMember]
    content_negotiation_class = _FormatIsOurs

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiTypes.BINARY,
            (200, exports.CONTENT_TYPES["xlsx"]): OpenApiTypes.BINARY,
        }
    )
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        job = _job_or_404(request, job_id, JobKind.EXPORT)
        if job.status != JobStatus.COMPLETED or not job.file:
            raise NotFound(f"The export is {job.status}; its file is ready once it completes.")
        path = Path(job.file.path)
        if not path.exists():
            raise NotFound("The export's file is no longer stored; export again.")
        return download_response(request._request, path, job.original_filename)
