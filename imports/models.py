"""Tenancy, the product catalogue and the one job record for every kind of job."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone


class Organization(models.Model):
    """The tenant ("merchant" in some clients' words). Everything is scoped to one."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"

    @property
    def can_operate(self) -> bool:
        return self.role in (Role.OPERATOR, Role.ADMIN)


class ProductStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DRAFT = "draft", "Draft"


class Product(models.Model):
    # bigint id: bulk upserts consume sequence values, so a narrow key would run out
    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (organization, sku) index serves organization lookups,
    # and every extra index is paid for on each imported row. No database-level FK check
    # either: it ran once per imported row at commit (3.6 µs of the writer's 11.6 µs a row,
    # measured). Products are written only by the import writer, with its job's organization,
    # and deleting an organization still deletes its products (CASCADE is Django's).
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="products",
        db_index=False,
        db_constraint=False,
    )
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2)
    # varchar + validation rather than char(3): Django 5.2 bulk paths mangle custom char(n)
    currency = models.CharField(max_length=3, default="USD")
    quantity = models.BigIntegerField(default=0)
    barcode = models.CharField(max_length=14, blank=True, default="")
    category = models.CharField(max_length=255, blank=True, default="")
    brand = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=ProductStatus.choices, default=ProductStatus.ACTIVE
    )
    # The database's own defaults as well: the import writer's COPY leaves both columns out
    # (as text in each line they were a third of its bytes).
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "sku"], name="product_sku_per_org"),
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_non_negative"),
            models.CheckConstraint(
                condition=Q(quantity__gte=0), name="product_quantity_non_negative"
            ),
        ]
        # Deliberately no other index that starts with organization: the import writer's
        # lookups must only ever probe (organization, sku). With a second such index and stale
        # statistics the planner walked all of an organization's products per row (74 s for
        # one 5,000-row batch). Listing by status within an organization is served well enough
        # by the unique index's organization prefix.

    def __str__(self) -> str:
        return f"{self.sku} — {self.name}"


class JobKind(models.TextChoices):
    PRODUCT_IMPORT = "product_import", "Product import"
    COMPONENT_IMPORT = "component_import", "Component import"
    BOM_ENRICHMENT = "bom_enrichment", "BOM enrichment"
    PURCHASE_ORDER = "purchase_order", "Purchase order"
    EXPORT = "export", "Export"


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Priority(models.TextChoices):
    HIGH = "high", "High"
    DEFAULT = "default", "Default"
    LOW = "low", "Low"


class ImportMode(models.TextChoices):
    CREATE = "create", "Create only"
    UPDATE = "update", "Update only"
    UPSERT = "upsert", "Create or update"


def job_upload_path(job: ImportJob, filename: str) -> str:
    return f"jobs/{job.organization_id}/{job.id}/{filename}"


class ImportJob(models.Model):
    """One record for every kind of background job; the truth that events only announce."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    kind = models.CharField(max_length=32, choices=JobKind.choices, default=JobKind.PRODUCT_IMPORT)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    stage = models.CharField(max_length=32, blank=True, default="")
    progress = models.PositiveSmallIntegerField(default=0)
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    processed_rows = models.PositiveIntegerField(default=0)
    created_rows = models.PositiveIntegerField(default=0)
    updated_rows = models.PositiveIntegerField(default=0)
    unchanged_rows = models.PositiveIntegerField(default=0)
    skipped_rows = models.PositiveIntegerField(default=0)
    failed_rows = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # the first N row errors
    warnings = models.JSONField(default=list, blank=True)
    # the stage timeline of the current attempt: [{"stage": "reading", "at": iso-8601}, ...]
    stages = models.JSONField(default=list, blank=True)
    error_message = models.TextField(blank=True, default="")
    original_filename = models.CharField(max_length=255, blank=True, default="")
    file = models.FileField(upload_to=job_upload_path, max_length=500, blank=True)
    file_size = models.BigIntegerField(default=0)
    # SHA-256 of the uploaded file, taken while it was stored: tells a repeated upload
    content_sha256 = models.CharField(max_length=64, blank=True, default="")
    rq_job_id = models.CharField(max_length=64, blank=True, default="")
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.DEFAULT)
    options = models.JSONField(default=dict, blank=True)  # mode, dry_run, atomic, batch_size
    attempt = models.PositiveIntegerField(default=1)
    source_job = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="confirmations",
        help_text="The dry run that this job confirms.",
    )
    fixes = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fix_jobs",
        help_text="The job whose failed rows this job imports again, corrected.",
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    checkpoint_row = models.PositiveIntegerField(
        default=0, help_text="Last file row whose batch is committed."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="job_org_newest"),
            models.Index(fields=["organization", "status"], name="job_org_status"),
            models.Index(
                fields=["organization", "content_sha256", "-created_at"],
                name="job_org_content_hash",
                condition=~Q(content_sha256=""),
            ),
            models.Index(
                fields=["heartbeat_at"],
                name="job_processing_heartbeat",
                condition=Q(status="processing"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id} ({self.status})"

    # what a new attempt starts again from zero
    COUNTERS = (
        "processed_rows",
        "created_rows",
        "updated_rows",
        "unchanged_rows",
        "skipped_rows",
        "failed_rows",
        "error_count",
        "progress",
        "checkpoint_row",
    )

    def enter_stage(self, name: str) -> None:
        """Set ``stage`` and record it in the timeline (the caller saves both fields)."""
        self.stage = name
        self.stages = [*self.stages, {"stage": name, "at": timezone.now().isoformat()}]

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def mode(self) -> str:
        return self.options.get("mode", ImportMode.UPSERT)

    @property
    def dry_run(self) -> bool:
        return bool(self.options.get("dry_run", False))

    @property
    def atomic(self) -> bool:
        return bool(self.options.get("atomic", False))

    @property
    def batch_size(self) -> int:
        return int(self.options.get("batch_size") or settings.IMPORT_BATCH_SIZE)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ImportRowError(models.Model):
    """Every row error of a job's latest attempt (the job keeps only the first N)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    row_number = models.PositiveIntegerField()
    message = models.TextField()
    values = models.JSONField(default=list)  # the original row, for the error CSV

    class Meta:
        ordering = ["row_number", "id"]
        indexes = [models.Index(fields=["job", "row_number"], name="rowerror_job_row")]

    def __str__(self) -> str:
        return self.message


class ColumnMapping(models.Model):
    """A column mapping a person confirmed, remembered per organization and header set.

    ``spec`` says what the columns were mapped onto ("product" here; the enrichment app keeps
    its BOM mappings beside them), ``header_key`` the set of column names (any order).
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="column_mappings"
    )
    spec = models.CharField(max_length=32, default="product")
    header_key = models.CharField(max_length=40)
    header = models.JSONField(default=list)
    mapping = models.JSONField(default=dict)  # {column: field or null}
    preset = models.CharField(max_length=32, blank=True, default="")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "spec", "header_key"], name="column_mapping_per_header"
            )
        ]

    def __str__(self) -> str:
        return f"{self.spec} mapping of {len(self.header)} columns ({self.organization})"


from .purchasing.models import *  # noqa: E402, F403  (the purchase-order models)
