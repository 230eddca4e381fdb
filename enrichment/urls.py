"""API routes of BOM enrichment (included under /api/v1/ from config/urls.py)."""

from __future__ import annotations

from django.urls import path

from . import api, export, views

urlpatterns = [
    path("components", api.ComponentListView.as_view(), name="component-list"),
    path("components/import", api.ComponentImportView.as_view(), name="component-import"),
    path("projects", api.ProjectListView.as_view(), name="project-list"),
    path("boms", api.BomListView.as_view(), name="bom-list"),
    path("boms/<int:bom_id>", api.BomDetailView.as_view(), name="bom-detail"),
    path("boms/<int:bom_id>/lines", api.BomLinesView.as_view(), name="bom-lines"),
    path("boms/<int:bom_id>/lines/<int:line_id>", api.BomLineView.as_view(), name="bom-line"),
    path("boms/<int:bom_id>/export", export.BomExportView.as_view(), name="bom-export"),
    path(
        "boms/<int:bom_id>/enrichment/start",
        api.EnrichmentStartView.as_view(),
        name="bom-enrichment-start",
    ),
]

# Pages (included at the site root from config/urls.py)
pages = [
    path("boms/", views.boms_page, name="boms-page"),
    path("boms/<int:bom_id>/", views.bom_page, name="bom-page"),
    path("boms/<int:bom_id>/<str:action>", views.bom_action, name="bom-action"),
    path("components/", views.components_page, name="components-page"),
]
