"""The purchase-order shapes of the API (and of the page's raw JSON)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..serializers import ImportJobSerializer
from .models import DeliveryAttempt, PurchaseOrder, PurchaseOrderLine, WorkflowStage
from .selectors import current_stages


class StageSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = WorkflowStage
        fields = [
            "name",
            "status",
            "attempt",
            "started_at",
            "finished_at",
            "duration_seconds",
            "message",
            "summary",
            "error",
        ]
        read_only_fields = fields


class LineSerializer(serializers.ModelSerializer):
    product = serializers.SerializerMethodField()
    image = serializers.SerializerMethodField()
    thumbnail = serializers.SerializerMethodField()

    class Meta:
        model = PurchaseOrderLine
        fields = [
            "line_number",
            "sku",
            "supplier_sku",
            "description",
            "quantity",
            "unit_cost",
            "line_total",
            "image_url",
            "image",
            "thumbnail",
            "product",
            "confidence",
            "reasons",
            "warnings",
        ]
        read_only_fields = fields

    def get_product(self, line: PurchaseOrderLine) -> dict[str, Any] | None:
        p = line.product
        if p is None:
            return None
        return {
            "id": p.id,
            "sku": p.sku,
            "name": p.name,
            "status": p.status,
            "created_by_this_order": line.product_created,
        }

    def get_image(self, line: PurchaseOrderLine) -> str | None:
        return self._url(line, "image") if line.image else None

    def get_thumbnail(self, line: PurchaseOrderLine) -> str | None:
        return self._url(line, "thumbnail") if line.thumbnail else None

    @staticmethod
    def _url(line: PurchaseOrderLine, kind: str) -> str:
        # served by the order page's view, for the organization's members only
        return f"/purchase-orders/{line.order_id}/lines/{line.line_number}/{kind}"


class DeliverySerializer(serializers.ModelSerializer):
    batch = serializers.IntegerField(source="batch.number")
    idempotency_key = serializers.UUIDField(source="batch.idempotency_key")

    class Meta:
        model = DeliveryAttempt
        fields = [
            "batch",
            "idempotency_key",
            "attempt",
            "status_code",
            "outcome",
            "error",
            "latency_ms",
            "retry_after_seconds",
            "response_excerpt",
            "created_at",
        ]
        read_only_fields = fields


class PurchaseOrderSerializer(serializers.ModelSerializer):
    supplier = serializers.SerializerMethodField()
    confidence = serializers.FloatField(allow_null=True)
    job = ImportJobSerializer(read_only=True)
    stages = serializers.SerializerMethodField()

    class Meta:
        model = PurchaseOrder
        fields = [
            "id",
            "po_number",
            "supplier",
            "order_date",
            "expected_date",
            "currency",
            "subtotal",
            "tax",
            "total",
            "status",
            "confidence",
            "field_confidence",
            "checks",
            "review_reasons",
            "duplicate_of",
            "warnings",
            "summary",
            "line_count",
            "original_filename",
            "source_format",
            "template_name",
            "job",
            "stages",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_supplier(self, order: PurchaseOrder) -> str:
        return order.supplier.name if order.supplier else order.supplier_name

    def get_stages(self, order: PurchaseOrder) -> list[dict[str, Any]]:
        return StageSerializer(current_stages(order), many=True).data


class PurchaseOrderDetailSerializer(PurchaseOrderSerializer):
    lines = serializers.SerializerMethodField()
    deliveries = serializers.SerializerMethodField()

    class Meta(PurchaseOrderSerializer.Meta):
        fields = [*PurchaseOrderSerializer.Meta.fields, "lines", "deliveries"]
        read_only_fields = fields

    def get_lines(self, order: PurchaseOrder) -> list[dict[str, Any]]:
        limit = self.context.get("lines_limit", 1000)
        qs = order.lines.select_related("product").order_by("line_number")[:limit]
        return LineSerializer(qs, many=True).data

    def get_deliveries(self, order: PurchaseOrder) -> list[dict[str, Any]]:
        qs = order.deliveries.select_related("batch").order_by("id")[:500]
        return DeliverySerializer(qs, many=True).data
