"""The enriched BOM as CSV (streamed) or XLSX (written to a temporary file, then streamed),
formula-safe: a cell that starts like a formula is quoted (``imports.api.escape_cell``)."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from imports import exports
from imports.api import escape_cell
from imports.pipeline.export import xlsx_text
from imports.tenancy import IsMember

from .api import bom_or_404
from .models import Bom, BomLine

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = [
    "line", "references", "quantity", "mpn", "manufacturer", "description", "dnp",
    "match_status", "match_tier", "confidence", "matched_manufacturer", "matched_mpn",
    "lifecycle", "stock", "unit_price", "extended_price", "currency", "datasheet_url",
    "warnings", "notes",
]  # fmt: skip


_FIELDS = (
    "line_number", "references", "quantity", "mpn", "manufacturer", "description", "dnp",
    "match_status", "match_tier", "confidence", "component__manufacturer", "component__mpn",
    "lifecycle", "stock", "unit_price", "extended_price", "currency", "datasheet_url",
    "warnings", "notes",
)  # fmt: skip


def export_rows(bom: Bom, cell: Callable[[object], object] = escape_cell) -> Iterator[list[object]]:
    """The BOM's lines as cells, each through ``cell`` (formula-safe)."""
    qs = BomLine.objects.filter(bom=bom).order_by("line_number").values_list(*_FIELDS)
    for row in qs.iterator(chunk_size=2000):
        values = list(row)
        values[6] = "yes" if values[6] else ""
        values[-2] = "; ".join(values[-2] or [])
        values[-1] = "; ".join(values[-1] or [])
        yield [cell(v) for v in values]


def _xlsx_cell(value: object) -> object:
    """Numbers stay numbers (quantities, stock, prices, confidence: a spreadsheet sums them);
    everything else is formula-safe text a worksheet can hold."""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return value
    return xlsx_text(value)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv(bom: Bom) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff"  # so Excel opens it as UTF-8
    yield writer.writerow(HEADER)
    for row in export_rows(bom):
        yield writer.writerow(row)


class BomExportView(APIView):
    permission_classes = [IsMember]

    def perform_content_negotiation(self, request: Request, force: bool = False):
        # ``?format=`` names the file type here, not one of DRF's renderers
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=["csv", "xlsx"], description="csv (default)")
        ],
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, XLSX): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, bom_id: int):
        bom = bom_or_404(request, bom_id)
        fmt = request.query_params.get("format", "csv").lower()
        stem = Path(bom.original_filename or bom.name or "bom").stem or "bom"
        if fmt == "csv":
            # a block at a time under ASGI: Django would read the whole file into a list first
            content = exports.streamed(request, exports.in_blocks(_csv(bom)))
            response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
            # quoted and escaped by Django: a '"' or a newline in a stored name broke the header
            response["Content-Disposition"] = content_disposition_header(
                as_attachment=True, filename=f"{stem}-enriched.csv"
            )
            return response
        if fmt == "xlsx":
            from openpyxl import Workbook

            wb = Workbook(write_only=True)
            ws = wb.create_sheet("BOM")
            ws.append(HEADER)
            for row in export_rows(bom, _xlsx_cell):
                ws.append(row)
            fh = tempfile.TemporaryFile(suffix=".xlsx")  # noqa: SIM115 (FileResponse closes it)
            wb.save(fh)
            size = fh.tell()
            fh.seek(0)
            response = StreamingHttpResponse(
                exports.streamed(request, exports.handle_blocks(fh)), content_type=XLSX
            )
            response["Content-Disposition"] = content_disposition_header(
                as_attachment=True, filename=f"{stem}-enriched.xlsx"
            )
            response["Content-Length"] = str(size)
            return response
        raise ValidationError({"format": f"Unknown format '{fmt}': use csv or xlsx."})
