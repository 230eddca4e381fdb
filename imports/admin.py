from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from . import services
from .models import ImportJob, Membership, Organization, Product


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "organization__name"]
    autocomplete_fields = ["user", "organization"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "price", "currency", "quantity", "status", "organization"]
    list_filter = ["status", "organization"]
    search_fields = ["sku", "name"]
    list_select_related = ["organization"]
    show_full_result_count = False


def _run_service(
    request: HttpRequest, queryset: QuerySet[ImportJob], action: Any, verb: str
) -> None:
    done = 0
    for job in queryset:
        try:
            action(job=job)
            done += 1
        except services.ServiceError as exc:
            messages.warning(request, f"{job.original_filename or job.id}: {exc.message}")
    if done:
        messages.success(request, f"{verb} {done} job(s).")


@admin.action(description="Cancel selected jobs", permissions=["change"])
def cancel_jobs(modeladmin: Any, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
    _run_service(request, queryset, services.import_job_cancel, "Cancelled")


@admin.action(description="Retry selected jobs", permissions=["change"])
def retry_jobs(modeladmin: Any, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
    _run_service(request, queryset, services.import_job_retry, "Retried")


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = [
        "original_filename",
        "kind",
        "status",
        "progress_bar",
        "processed_rows",
        "total_rows",
        "error_count",
        "organization",
        "created_at",
    ]
    list_filter = ["status", "kind", "organization"]
    search_fields = ["id", "original_filename"]
    list_select_related = ["organization"]
    actions = [cancel_jobs, retry_jobs]
    exclude = ["errors"]
    readonly_fields = ["row_errors_table", "rq_link"]

    def get_readonly_fields(self, request: HttpRequest, obj: ImportJob | None = None) -> list[str]:
        fields = [f.name for f in ImportJob._meta.fields if f.name != "errors"]
        return [*fields, "rq_link", "row_errors_table"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from an upload (dashboard or API), never from a blank form

    @admin.display(description="Progress")
    def progress_bar(self, job: ImportJob) -> str:
        return format_html(
            '<progress max="100" value="{}" role="progressbar" aria-valuenow="{}" '
            'data-job-id="{}"></progress> {}%',
            job.progress,
            job.progress,
            job.id,
            job.progress,
        )

    @admin.display(description="RQ job")
    def rq_link(self, job: ImportJob) -> str:
        if not job.rq_job_id:
            return "—"
        return format_html(
            '<a href="/admin/rq/queues/actions/{}/">{}</a> on queue {}',
            job.rq_job_id,
            job.rq_job_id,
            job.priority,
        )

    @admin.display(description="Row errors (first 1,000)")
    def row_errors_table(self, job: ImportJob) -> str:
        if not job.errors:
            return "None"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td></tr>", ((e["row"], e["message"]) for e in job.errors)
        )
        return format_html(
            "<table><thead><tr><th>Row</th><th>Error</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="/api/v1/products/import/{}/errors.csv">'
            "Download every error as CSV</a></p>",
            rows,
            job.id,
        )
