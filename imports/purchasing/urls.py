"""API routes, included under /api/v1/ (the pages are in page_urls.py)."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("purchase-orders", api.PurchaseOrderListView.as_view(), name="po-list"),
    path("purchase-orders/<int:order_id>", api.PurchaseOrderDetailView.as_view(), name="po-detail"),
    path(
        "purchase-orders/<int:order_id>/lines",
        api.PurchaseOrderLinesView.as_view(),
        name="po-lines",
    ),
    path(
        "purchase-orders/<int:order_id>/review",
        api.PurchaseOrderReviewView.as_view(),
        name="po-review",
    ),
    path(
        "purchase-orders/<int:order_id>/retry",
        api.PurchaseOrderRetryView.as_view(),
        name="po-retry",
    ),
    path("organization/store", api.StoreConnectionView.as_view(), name="organization-store"),
]
