from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from enrichment import urls as enrichment_urls
from imports import views as pages
from imports import views_mapping
from realtime import views as realtime_pages
from realtime.api import metrics_view

# a 404 under /api/ is JSON like every other API error
handler404 = "imports.api_errors.not_found"

urlpatterns = [
    path("", pages.dashboard, name="dashboard"),
    path("jobs/<uuid:job_id>/", pages.job_page, name="job-page"),
    path("jobs/<uuid:job_id>/mapping/", views_mapping.mapping_step, name="mapping-step"),
    path("jobs/<uuid:job_id>/fix/", views_mapping.fix_rows, name="fix-rows"),
    path("export/", views_mapping.export_page, name="export-page"),
    path(
        "jobs/<uuid:job_id>/<str:action>",
        pages.job_action,
        name="job-action",
    ),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("imports.urls")),
    path("api/v1/", include("realtime.urls")),
    path("api/v1/", include("enrichment.urls")),
    path("", include(enrichment_urls.pages)),
    path("api/v1/", include("imports.purchasing.urls")),
    path("purchase-orders/", include("imports.purchasing.page_urls")),
    path("metrics", metrics_view, name="metrics"),
    path("realtime/", realtime_pages.ops_page, name="realtime-ops"),
    path("realtime/data", realtime_pages.ops_data, name="realtime-ops-data"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
