"""Purchase orders: suppliers, parsing templates, orders and lines, the stage rows of each run,
the store connection and the delivery log of the sync stage."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from ..models import ImportJob, Organization, Product


class Supplier(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="suppliers"
    )
    name = models.CharField(max_length=200)
    # other spellings seen on documents ("ACME GmbH", "Acme Corp."), matched case-insensitively
    aliases = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="po_supplier_name")
        ]

    def __str__(self) -> str:
        return self.name


class DecimalSeparator(models.TextChoices):
    AUTO = "auto", "Detect"
    POINT = ".", "Point (27.80)"
    COMMA = ",", "Comma (27,80)"


class ParsingTemplate(models.Model):
    """A supplier's document layout, as data (in the spirit of invoice2data): keywords that
    pick it, a regular expression per header field, one for a line, the decimal separator."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="po_templates"
    )
    name = models.CharField(max_length=200)
    supplier = models.ForeignKey(
        Supplier, null=True, blank=True, on_delete=models.SET_NULL, related_name="templates"
    )
    keywords = models.JSONField(
        default=list, help_text="Every keyword must appear in the document for it to match."
    )
    fields = models.JSONField(
        default=dict,
        blank=True,
        help_text='Field name → regular expression with one group, e.g. {"po_number": '
        '"Order no\\\\.\\\\s*(\\\\S+)"}. Fields: po_number, supplier, order_date, '
        "expected_date, currency, subtotal, tax, total.",
    )
    line_pattern = models.TextField(
        blank=True,
        default="",
        help_text="Regular expression for one line with named groups: sku, supplier_sku, "
        "description, quantity, unit_cost, line_total, image_url.",
    )
    decimal_separator = models.CharField(
        max_length=4, choices=DecimalSeparator.choices, default=DecimalSeparator.AUTO
    )
    date_formats = models.JSONField(
        default=list, blank=True, help_text='strptime formats tried in order, e.g. ["%d.%m.%Y"]'
    )
    currency = models.CharField(
        max_length=3, blank=True, default="", help_text="Used when the document names none."
    )
    priority = models.IntegerField(default=0, help_text="Higher wins when several match.")
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="po_template_name")
        ]

    def __str__(self) -> str:
        return self.name


class POStatus(models.TextChoices):
    PROCESSING = "processing", "Processing"
    NEEDS_REVIEW = "needs_review", "Needs review"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


def po_upload_path(order: PurchaseOrder, filename: str) -> str:
    return f"purchase-orders/{order.organization_id}/{uuid.uuid4().hex[:12]}/{filename}"


class PurchaseOrder(models.Model):
    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="purchase_orders"
    )
    job = models.OneToOneField(
        ImportJob, on_delete=models.PROTECT, related_name="purchase_order", null=True, blank=True
    )
    supplier = models.ForeignKey(
        Supplier, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    supplier_name = models.CharField(max_length=200, blank=True, default="")
    po_number = models.CharField(max_length=100, blank=True, default="")
    order_date = models.DateField(null=True, blank=True)
    expected_date = models.DateField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    subtotal = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    tax = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    total = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    status = models.CharField(max_length=16, choices=POStatus.choices, default=POStatus.PROCESSING)
    source_file = models.FileField(upload_to=po_upload_path, max_length=500, blank=True)
    original_filename = models.CharField(max_length=255, blank=True, default="")
    source_format = models.CharField(max_length=16, blank=True, default="")
    template_name = models.CharField(max_length=200, blank=True, default="")
    confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    # {"po_number": {"score": 1.0, "reasons": ["template 'Acme' matched", ...]}, ...}
    field_confidence = models.JSONField(default=dict, blank=True)
    # the arithmetic checks: [{"check": "lines_sum_subtotal", "ok": false, "message": "..."}]
    checks = models.JSONField(default=list, blank=True)
    review_reasons = models.JSONField(default=list, blank=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates"
    )
    warnings = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    line_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="po_org_newest"),
            models.Index(fields=["organization", "status"], name="po_org_status"),
            models.Index(fields=["organization", "supplier", "po_number"], name="po_org_number"),
        ]

    def __str__(self) -> str:
        return f"PO {self.po_number or '?'} ({self.supplier_name or 'unknown supplier'})"


class PurchaseOrderLine(models.Model):
    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(PurchaseOrder, on_delete=models.CASCADE, related_name="lines")
    line_number = models.PositiveIntegerField()
    sku = models.CharField(max_length=64, blank=True, default="")
    supplier_sku = models.CharField(max_length=64, blank=True, default="")
    description = models.TextField(blank=True, default="")
    quantity = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    unit_cost = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    line_total = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    image_url = models.CharField(max_length=1000, blank=True, default="")
    # no database FK check: products are written set-based by the drafts stage
    product = models.ForeignKey(
        Product,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="po_lines",
        db_constraint=False,
    )
    product_created = models.BooleanField(default=False)
    confidence = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    image = models.FileField(max_length=500, blank=True)
    thumbnail = models.FileField(max_length=500, blank=True)
    warnings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["line_number"]
        constraints = [
            models.UniqueConstraint(fields=["order", "line_number"], name="po_line_number")
        ]

    def __str__(self) -> str:
        return f"{self.line_number}: {self.sku or self.supplier_sku} x {self.quantity}"


class StageStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class WorkflowStage(models.Model):
    """One stage of one run (job) of the workflow: the truth a retry resumes from."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="workflow_stages")
    order = models.ForeignKey(PurchaseOrder, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=16, choices=StageStatus.choices, default=StageStatus.PENDING
    )
    attempt = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True, default="")
    summary = models.JSONField(default=dict, blank=True)
    # what a later stage (or a retry) reads instead of doing the work again: the parse result
    output = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="po_stage_per_run")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class StoreConnection(models.Model):
    """Where an organization's store receives products (set by an organization admin)."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="store_connection"
    )
    url = models.URLField(max_length=500, blank=True, default="")
    secret = models.CharField(max_length=200, blank=True, default="")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        from .outbound import redacted  # credentials in the URL are never shown

        return f"{self.organization}: {redacted(self.url) if self.url else 'no endpoint'}"

    @property
    def configured(self) -> bool:
        return bool(self.url)


class SyncBatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class SyncBatch(models.Model):
    """One logical write to the store: its body and idempotency key are stored before the first
    attempt and sent unchanged on every retry."""

    order = models.ForeignKey(PurchaseOrder, on_delete=models.CASCADE, related_name="sync_batches")
    number = models.PositiveIntegerField()
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True)
    product_count = models.PositiveIntegerField()
    body = models.BinaryField()
    status = models.CharField(
        max_length=16, choices=SyncBatchStatus.choices, default=SyncBatchStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "number"]
        constraints = [
            models.UniqueConstraint(fields=["order", "number"], name="po_sync_batch_number")
        ]

    def __str__(self) -> str:
        return f"batch {self.number} ({self.status})"


class DeliveryAttempt(models.Model):
    """The delivery log: one row per HTTP attempt of a batch."""

    batch = models.ForeignKey(SyncBatch, on_delete=models.CASCADE, related_name="deliveries")
    order = models.ForeignKey(PurchaseOrder, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveIntegerField()
    url = models.CharField(max_length=500)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=32)  # delivered, retry, refused, network_error
    error = models.TextField(blank=True, default="")
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True, default="")
    retry_after_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "id"]

    def __str__(self) -> str:
        return f"batch {self.batch_id} attempt {self.attempt}: {self.outcome}"


__all__ = [
    "DeliveryAttempt",
    "ParsingTemplate",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "StoreConnection",
    "Supplier",
    "SyncBatch",
    "WorkflowStage",
]
