from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django_rq.settings import get_queues_map

from realtime.events import job_topic, org_topic

from . import admin_actions, services
from .admin_actions import bounded
from .models import ColumnMapping, ImportJob, Membership, Organization, Product
from .templatetags.intake import num, rows_of, status_label
from .views import live_stream

# Live admin pages follow at most this many of the user's organizations (one stream each).
MAX_LIVE_ORGANIZATIONS = 3

admin_actions.install()


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
@bounded
def cancel_jobs(modeladmin: Any, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
    _run_service(request, queryset, services.import_job_cancel, "Cancelled")


@admin.action(description="Retry selected jobs", permissions=["change"])
@bounded
def retry_jobs(modeladmin: Any, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
    _run_service(request, queryset, services.import_job_retry, "Retried")


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Jobs with live progress: the list and the change page load static/js/live.js, which
    follows the organizations' streams (the user must be a member to watch them)."""

    list_display = [
        "original_filename",
        "kind",
        "status_badge",
        "progress_bar",
        "rows",
        "errors_live",
        "organization",
        "created_at",
    ]
    list_filter = ["status", "kind", "organization"]
    search_fields = ["id", "original_filename"]
    list_select_related = ["organization"]
    actions = [cancel_jobs, retry_jobs]
    exclude = ["errors"]
    change_list_template = "admin/imports/importjob/change_list.html"
    change_form_template = "admin/imports/importjob/change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: ImportJob | None = None) -> list[str]:
        fields = [f.name for f in ImportJob._meta.fields if f.name != "errors"]
        return [*fields, "rq_link", "row_errors_table"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from an upload (dashboard or API), never from a blank form

    # ------------------------------------------------------------------ columns

    @admin.display(description="Status", ordering="status")
    def status_badge(self, job: ImportJob) -> str:
        return format_html(
            '<span class="badge status-{}" data-job-id="{}" data-field="status">{}</span>',
            job.status,
            job.id,
            status_label(job.status),
        )

    @admin.display(description="Progress")
    def progress_bar(self, job: ImportJob) -> str:
        return format_html(
            '<div class="bar status-{}" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            'aria-valuenow="{}" aria-label="Progress" data-job-id="{}" data-field="progress">'
            '<span style="width: {}%"></span></div> '
            '<span data-job-id="{}" data-field="progress_text">{}%</span>',
            job.status,
            job.progress,
            job.id,
            job.progress,
            job.id,
            job.progress,
        )

    @admin.display(description="Rows done / total")
    def rows(self, job: ImportJob) -> str:
        counts = {"processed_rows": job.processed_rows, "total_rows": job.total_rows}
        return format_html(
            '<span data-job-id="{}" data-field="rows">{}</span>', job.id, rows_of(counts)
        )

    @admin.display(description="Errors", ordering="error_count")
    def errors_live(self, job: ImportJob) -> str:
        return format_html(
            '<span data-job-id="{}" data-field="error_count">{}</span>',
            job.id,
            num(job.error_count),
        )

    @admin.display(description="RQ job")
    def rq_link(self, job: ImportJob) -> str:
        index = get_queues_map().get(job.priority)
        if not job.rq_job_id or index is None:
            return "—"
        url = reverse("django_rq:job_detail", args=[index, job.rq_job_id])
        return format_html('<a href="{}">{}</a> on queue {}', url, job.rq_job_id, job.priority)

    @admin.display(description="Row errors (first 1,000)")
    def row_errors_table(self, job: ImportJob) -> str:
        if not job.errors:
            body = "None"
        else:
            rows = format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td></tr>",
                ((e["row"], e["message"]) for e in job.errors),
            )
            body = format_html(
                "<table><thead><tr><th>Row</th><th>Error</th></tr></thead><tbody>{}</tbody>"
                '</table><p><a href="/api/v1/jobs/{}/errors.csv?organization={}">'
                "Download every error as CSV</a></p>",
                rows,
                job.id,
                job.organization_id,
            )
        # replaced in place by the live module when the job ends
        return format_html('<div id="row-errors" data-refresh-on-terminal>{}</div>', body)

    # ------------------------------------------------------------------ live pages

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        orgs = list(
            Membership.objects.filter(user=request.user)
            .order_by("created_at", "id")
            .values_list("organization_id", flat=True)[:MAX_LIVE_ORGANIZATIONS]
        )
        # before the list is read: it is at least as new as the streams' cursors
        streams = [
            live_stream(f"/api/v1/realtime/events?organization={org_id}", org_topic(org_id))
            for org_id in orgs
        ]
        context = {"live_streams": streams, **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if job is not None:
            member = Membership.objects.filter(
                user=request.user, organization_id=job.organization_id
            ).exists()
            context.update(
                live_job=job,
                live=live_stream(
                    f"/api/v1/jobs/{job.id}/events?organization={job.organization_id}",
                    job_topic(job.id),
                    close_on_terminal=True,
                    ended=job.is_terminal,
                )
                if member
                else None,
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/<str:action>/run/",
                self.admin_site.admin_view(self.run_action),
                name="imports_importjob_run",
            ),
            *super().get_urls(),
        ]

    def run_action(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """The change page's Cancel and Retry buttons (POST only)."""
        job = self.get_object(request, object_id)
        if job is None:
            raise Http404("No such job.")
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        act = {"cancel": cancel_jobs, "retry": retry_jobs}.get(action)
        if act is None:
            raise Http404("No such action.")
        act(self, request, ImportJob.objects.filter(pk=job.pk))
        return HttpResponseRedirect(reverse("admin:imports_importjob_change", args=[job.pk]))


@admin.register(ColumnMapping)
class ColumnMappingAdmin(admin.ModelAdmin):
    """Remembered column mappings: an admin can see them and delete a wrong one (the next
    upload with those columns is then proposed afresh)."""

    list_display = ("organization", "spec", "preset", "column_count", "updated_by", "updated_at")
    list_filter = ("spec", "preset")
    readonly_fields = ("organization", "spec", "header_key", "header", "mapping", "preset")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # remembered from uploads: its add form could set no organization (a 500)

    @admin.display(description="columns")
    def column_count(self, obj: ColumnMapping) -> int:
        return len(obj.header)


from .purchasing import admin as _purchasing_admin  # noqa: E402, F401  (registers it)
