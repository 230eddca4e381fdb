from __future__ import annotations

from django.urls import path

from . import api, api_export, api_mapping

# /status is declared before /<uuid:job_id>, and job ids are UUIDs, so it is never shadowed.
urlpatterns = [
    path("products/import", api.ProductImportView.as_view(), name="product-import"),
    path("products/import/status", api.ImportStatusView.as_view(), name="product-import-status"),
    path(
        "products/import/preview",
        api_mapping.ImportPreviewView.as_view(),
        name="product-import-preview",
    ),
    path(
        "products/import/<uuid:job_id>/fix",
        api_mapping.ImportFixView.as_view(),
        name="import-job-fix",
    ),
    path("products/import/<uuid:job_id>", api.ImportJobDetailView.as_view(), name="import-job"),
    path(
        "products/import/<uuid:job_id>/errors.csv",
        api.ImportJobErrorsCsvView.as_view(),
        name="import-job-errors",
    ),
    path(
        "products/import/<uuid:job_id>/errors",
        api.ImportJobErrorListView.as_view(),
        name="import-job-error-list",
    ),
    path(
        "products/import/<uuid:job_id>/cancel",
        api.ImportJobActionView.as_view(action="cancel"),
        name="import-job-cancel",
    ),
    path(
        "products/import/<uuid:job_id>/retry",
        api.ImportJobActionView.as_view(action="retry"),
        name="import-job-retry",
    ),
    path(
        "products/import/<uuid:job_id>/confirm",
        api.ImportJobActionView.as_view(action="confirm"),
        name="import-job-confirm",
    ),
    path("products", api.ProductListView.as_view(), name="product-list"),
    path("products/export", api_export.ProductExportView.as_view(), name="product-export"),
    path(
        "products/export/<uuid:job_id>/download",
        api_export.ExportDownloadView.as_view(),
        name="product-export-download",
    ),
    path("jobs", api.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>", api.JobDetailView.as_view(), name="job-detail"),
    # the same for a job of any kind (a component import's row errors, an enrichment's cancel)
    path(
        "jobs/<uuid:job_id>/errors",
        api.ImportJobErrorListView.as_view(kind=None),
        name="job-error-list",
    ),
    path(
        "jobs/<uuid:job_id>/errors.csv",
        api.ImportJobErrorsCsvView.as_view(kind=None),
        name="job-errors",
    ),
    path(
        "jobs/<uuid:job_id>/cancel",
        api.ImportJobActionView.as_view(action="cancel", kind=None),
        name="job-cancel",
    ),
    path(
        "jobs/<uuid:job_id>/retry",
        api.ImportJobActionView.as_view(action="retry", kind=None),
        name="job-retry",
    ),
]
