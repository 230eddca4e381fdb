"""Admin for purchase orders: orders (stages and delivery log inline), lines, suppliers,
parsing templates, store connections. Registered by one import in imports/admin.py."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..admin_actions import bounded
from ..admin_tenancy import SameOrganizationAdmin
from ..services import ServiceError
from . import services
from .models import (
    DeliveryAttempt,
    ParsingTemplate,
    PurchaseOrder,
    PurchaseOrderLine,
    StoreConnection,
    Supplier,
    SyncBatch,
    WorkflowStage,
)
from .outbound import OutboundRefused, check_url, redacted
from .parsing.templates import compile_errors


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StageInline(ReadOnlyInline):
    model = WorkflowStage
    fields = ["name", "status", "attempt", "started_at", "finished_at", "message", "error"]
    readonly_fields = fields
    ordering = ["job", "position"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowStage]:
        return super().get_queryset(request).defer("output")


class DeliveryInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["batch", "attempt", "status_code", "outcome", "latency_ms", "error", "created_at"]
    readonly_fields = fields
    max_num = 0


@admin.action(description="Retry selected failed orders from their failed stage")
@bounded
def retry_orders(modeladmin: Any, request: HttpRequest, queryset: QuerySet[PurchaseOrder]) -> None:
    done = 0
    for order in queryset:
        try:
            services.purchase_order_retry(order=order)
            done += 1
        except ServiceError as exc:
            messages.warning(request, f"Order #{order.id}: {exc.message}")
    if done:
        messages.success(request, f"Queued {done} order(s) again.")


@admin.register(PurchaseOrder)
class PurchaseOrderAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "po_number",
        "supplier_name",
        "status",
        "confidence",
        "line_count",
        "total",
        "currency",
        "duplicate_of",
        "organization",
        "created_at",
    ]
    list_filter = ["status", "source_format", "organization"]
    search_fields = ["po_number", "supplier_name", "original_filename"]
    list_select_related = ["organization", "duplicate_of"]
    readonly_fields = [
        "organization",
        "job",
        "supplier",
        "duplicate_of",
        "source_file",
        "original_filename",
        "source_format",
        "template_name",
        "confidence",
        "field_confidence",
        "checks",
        "review_reasons",
        "warnings",
        "summary",
        "line_count",
        "created_by",
        "reviewed_by",
        "reviewed_at",
        "created_at",
        "updated_at",
        "lines_link",
        "page_link",
    ]
    inlines = [StageInline, DeliveryInline]
    actions = [retry_orders]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # orders come from uploads: its add form could not set the organization

    @admin.display(description="Lines")
    def lines_link(self, order: PurchaseOrder) -> str:
        base = reverse("admin:imports_purchaseorderline_changelist")
        url = f"{base}?order__id__exact={order.pk}"
        return format_html('<a href="{}">{} lines</a>', url, order.line_count)

    @admin.display(description="Page")
    def page_link(self, order: PurchaseOrder) -> str:
        return format_html('<a href="{}">Open the order page</a>', f"/purchase-orders/{order.pk}/")


@admin.register(PurchaseOrderLine)
class PurchaseOrderLineAdmin(SameOrganizationAdmin):
    list_display = [
        "order",
        "line_number",
        "sku",
        "description",
        "quantity",
        "unit_cost",
        "line_total",
        "product",
        "confidence",
    ]
    list_filter = ["product_created"]
    search_fields = ["sku", "supplier_sku", "description"]
    raw_id_fields = ["order", "product"]
    list_select_related = ["order", "product"]
    show_full_result_count = False


@admin.register(Supplier)
class SupplierAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "aliases", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name"]


class ParsingTemplateForm(forms.ModelForm):
    class Meta:
        model = ParsingTemplate
        fields = [
            "organization",
            "name",
            "supplier",
            "keywords",
            "fields",
            "line_pattern",
            "decimal_separator",
            "date_formats",
            "currency",
            "priority",
            "active",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        fields = data.get("fields") or {}
        if not isinstance(fields, dict):
            raise forms.ValidationError("Fields must be an object: field name → pattern.")
        keywords = data.get("keywords") or []
        if not isinstance(keywords, list) or not keywords:
            raise forms.ValidationError("Give at least one keyword (a list of strings).")
        errors = compile_errors(
            {str(k): str(v) for k, v in fields.items()}, data.get("line_pattern") or ""
        )
        if errors:
            raise forms.ValidationError(errors)
        return data


@admin.register(ParsingTemplate)
class ParsingTemplateAdmin(SameOrganizationAdmin):
    form = ParsingTemplateForm
    list_display = ["name", "organization", "supplier", "decimal_separator", "priority", "active"]
    list_filter = ["organization", "active"]
    search_fields = ["name"]


class StoreConnectionForm(forms.ModelForm):
    url = forms.URLField(required=False, max_length=500, assume_scheme="https")
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="At least 16 characters. Leave empty to keep the current secret.",
    )

    class Meta:
        model = StoreConnection
        fields = ["organization", "url", "secret"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        url = (data.get("url") or "").strip()
        secret = data.get("secret") or ""
        if not secret and self.instance.pk:
            data["secret"] = secret = self.instance.secret
        if secret and len(secret) < 16:
            self.add_error("secret", "The signing secret must be at least 16 characters long.")
        if url:
            try:
                check_url(url, what="store URL")
            except OutboundRefused as exc:
                self.add_error("url", str(exc))
            if not secret:
                self.add_error("secret", "A store URL needs a signing secret.")
        return data


@admin.register(StoreConnection)
class StoreConnectionAdmin(admin.ModelAdmin):
    form = StoreConnectionForm
    list_display = ["organization", "shown_url", "secret_set", "updated_at"]

    @admin.display(boolean=True, description="Secret set")
    def secret_set(self, store: StoreConnection) -> bool:
        return bool(store.secret)

    @admin.display(description="URL")
    def shown_url(self, store: StoreConnection) -> str:
        return redacted(store.url)

    def get_fields(self, request: HttpRequest, obj: StoreConnection | None = None) -> list:
        fields = list(super().get_fields(request, obj))
        if not self.has_change_permission(request, obj):
            # staff who may only view get every field read-only, and a read-only field shows
            # its value: the signing secret is never shown, only whether it is set
            hidden = {"secret": "secret_set", "url": "shown_url"}
            return list(dict.fromkeys(hidden.get(f, f) for f in fields))
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: StoreConnection | None = None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not self.has_change_permission(request, obj):
            readonly += ["secret_set", "shown_url"]
        return readonly

    def save_model(
        self, request: HttpRequest, obj: StoreConnection, form: Any, change: bool
    ) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = [
        "order",
        "batch",
        "attempt",
        "status_code",
        "outcome",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["outcome"]
    raw_id_fields = ["order", "batch"]
    readonly_fields = [f.name for f in DeliveryAttempt._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the sync writes them: its add form could set no order (a 500)


@admin.register(SyncBatch)
class SyncBatchAdmin(admin.ModelAdmin):
    """The store requests of each order: key, state, attempts (the stored body is not shown)."""

    list_display = ["order", "number", "idempotency_key", "product_count", "status", "attempts"]
    list_filter = ["status"]
    raw_id_fields = ["order"]
    exclude = ["body"]
    readonly_fields = [
        "order",
        "number",
        "idempotency_key",
        "product_count",
        "status",
        "attempts",
        "delivered_at",
    ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the sync writes them: its add form could set no order (a 500)
