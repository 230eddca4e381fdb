"""Page routes, included under /purchase-orders/."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.purchase_orders_page, name="po-page"),
    path("<int:order_id>/", views.order_page, name="po-order-page"),
    path("<int:order_id>/review", views.order_review, name="po-order-review"),
    path("<int:order_id>/retry", views.order_retry, name="po-order-retry"),
    path(
        "<int:order_id>/lines/<int:line_number>/<str:kind>",
        views.line_image,
        name="po-line-image",
    ),
]
