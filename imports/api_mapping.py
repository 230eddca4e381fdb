"""REST API around column mapping: the preview of an upload, and importing fixed rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import fixes, services
from .api import _job_or_404, _job_response, _mapping_of
from .mappings import import_preview
from .models import JobKind
from .serializers import ImportJobSerializer
from .tenancy import IsMember, request_membership


class PreviewSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .csv, .tsv, .txt or .xlsx product file.")
    mapping = serializers.JSONField(required=False, default=None)
    preset = serializers.CharField(required=False, allow_blank=True, default="")


class ImportPreviewView(APIView):
    """The proposal and the first 20 rows as they would be imported; no job is made."""

    permission_classes = [IsMember]
    parser_classes = [MultiPartParser]

    @extend_schema(request=PreviewSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        membership = request_membership(request)
        form = PreviewSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        data = form.validated_data
        upload = data["file"]
        services.check_upload(upload)
        suffix = Path(upload.name or "").suffix.lower()
        with services._local_copy(upload, suffix) as path:
            preview = import_preview(
                organization=membership.organization,
                path=path,
                filename=upload.name or "upload.csv",
                mapping=_mapping_of(data),
                preset=data["preset"] or None,
            )
        return Response(preview)


class FixRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(min_value=1, help_text="The row number in the original file.")
    values = serializers.JSONField(
        help_text="The corrected cells: a list in the file's column order, or {column: value}."
    )


class FixSerializer(serializers.Serializer):
    rows = FixRowSerializer(many=True, allow_empty=False)


class ImportFixView(APIView):
    """Import corrected failed rows of a job as a new job linked to it."""

    permission_classes = [IsMember]
    parser_classes = [JSONParser]

    @extend_schema(request=FixSerializer, responses={202: ImportJobSerializer})
    def post(self, request: Request, job_id: str) -> Response:
        job = _job_or_404(request, job_id, JobKind.PRODUCT_IMPORT)
        raw_rows = request.data.get("rows") if isinstance(request.data, dict) else None
        limit = settings.IMPORT_FIX_MAX_ROWS
        if isinstance(raw_rows, list) and len(raw_rows) > limit:
            raise ValidationError({"rows": f"At most {limit:,} rows can be fixed at a time."})
        form = FixSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        corrected: dict[int, Any] = {r["row"]: r["values"] for r in form.validated_data["rows"]}
        fix_job = fixes.import_fix_create(job=job, user=request.user, rows=corrected)
        return _job_response(fix_job, status.HTTP_202_ACCEPTED)
