"""REST API: ``/api/v1/purchase-orders`` and ``/api/v1/organization/store``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..pagination import IntakePagination
from ..serializers import ImportJobSerializer
from ..tenancy import IsMember, request_membership
from . import selectors, services
from .models import POStatus, PurchaseOrder, StoreConnection
from .outbound import redacted
from .serializers import LineSerializer, PurchaseOrderDetailSerializer, PurchaseOrderSerializer


class Pagination(IntakePagination):
    max_limit = 200  # a huge ?limit= must not serialize a whole table into memory


class LinePagination(IntakePagination):
    default_limit = 500
    max_limit = 1000


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .csv, .tsv, .xlsx, .txt, .eml, .pdf or .json order.")


class ReviewLineSerializer(serializers.Serializer):
    line_number = serializers.IntegerField(min_value=1)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValidationError("Each line correction must be an object with 'line_number'.")
        base = super().to_internal_value(data)
        return {**data, **base}


class ReviewSerializer(serializers.Serializer):
    fields = serializers.DictField(required=False, default=dict)
    lines = ReviewLineSerializer(many=True, required=False, default=list)
    confirm = serializers.BooleanField(required=False, default=False)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if not (data["fields"] or data["lines"] or data["confirm"]):
            raise ValidationError(
                "Send corrected 'fields' and/or 'lines', or {\"confirm\": true} to accept as is."
            )
        if len(data["lines"]) > 10_000:
            raise ValidationError("At most 10,000 line corrections per review.")
        return data


class OrderAndJobSerializer(serializers.Serializer):
    """What an upload, a review and a retry answer: the order and its (new) job."""

    purchase_order = PurchaseOrderSerializer()
    job = ImportJobSerializer()


class StoreBodySerializer(serializers.Serializer):
    """The store connection as members see it: never the secret, only whether one is set."""

    url = serializers.CharField()
    secret_set = serializers.BooleanField()
    updated_at = serializers.DateTimeField(allow_null=True)


def order_or_404(request: Request, order_id: Any) -> PurchaseOrder:
    org = request_membership(request).organization
    order = selectors.with_stages(selectors.purchase_orders(organization=org)).filter(pk=order_id)
    found = order.first()
    if found is None:
        raise NotFound("No such purchase order.")  # another tenant's is exactly like a missing one
    return found


def order_and_job(order: PurchaseOrder, code: int) -> Response:
    order = selectors.with_stages(PurchaseOrder.objects.select_related("job", "supplier")).get(
        pk=order.pk
    )
    body = {
        "purchase_order": PurchaseOrderSerializer(order).data,
        "job": ImportJobSerializer(order.job).data,
    }
    response = Response(body, status=code)
    response["Location"] = f"/api/v1/purchase-orders/{order.id}"
    return response


class PurchaseOrderListView(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = PurchaseOrderSerializer
    pagination_class = Pagination
    parser_classes = [MultiPartParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=[c.value for c in POStatus]),
            OpenApiParameter("supplier", str, description="supplier name or id"),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[PurchaseOrder]:
        org = request_membership(self.request).organization
        qs = selectors.with_stages(selectors.purchase_orders(organization=org))
        params = self.request.query_params
        wanted = params.get("status")
        if wanted:
            allowed = [c.value for c in POStatus]
            if wanted not in allowed:
                raise ValidationError(
                    {"status": f"Unknown status '{wanted}': use one of {', '.join(allowed)}."}
                )
            qs = qs.filter(status=wanted)
        supplier = params.get("supplier", "").strip()
        if supplier:
            if supplier.isascii() and supplier.isdecimal():
                qs = qs.filter(supplier_id=int(supplier))
            else:
                qs = qs.filter(supplier_name__iexact=supplier) | qs.filter(
                    supplier__name__iexact=supplier
                )
        return qs.order_by("-created_at", "-id")

    @extend_schema(request=UploadSerializer, responses={202: OrderAndJobSerializer})
    def post(self, request: Request) -> Response:
        length = request.META.get("CONTENT_LENGTH") or ""
        limit = settings.PO_MAX_UPLOAD_BYTES
        if length.isascii() and length.isdecimal() and int(length) > limit + 65536:
            return Response(
                {"detail": f"File is larger than the {limit / 1048576:g} MB limit."},
                status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        membership = request_membership(request)
        form = UploadSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        order = services.purchase_order_create(
            organization=membership.organization,
            user=request.user,
            upload=form.validated_data["file"],
        )
        return order_and_job(order, status.HTTP_202_ACCEPTED)


class PurchaseOrderDetailView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: PurchaseOrderDetailSerializer})
    def get(self, request: Request, order_id: int) -> Response:
        order = order_or_404(request, order_id)
        return Response(PurchaseOrderDetailSerializer(order).data)


class PurchaseOrderLinesView(generics.ListAPIView):
    permission_classes = [IsMember]
    serializer_class = LineSerializer
    pagination_class = LinePagination

    def get_queryset(self) -> QuerySet[Any]:
        order = order_or_404(self.request, self.kwargs["order_id"])
        return order.lines.select_related("product").order_by("line_number")


class PurchaseOrderReviewView(APIView):
    permission_classes = [IsMember]
    parser_classes = [JSONParser]

    @extend_schema(request=ReviewSerializer, responses={202: OrderAndJobSerializer})
    def post(self, request: Request, order_id: int) -> Response:
        order = order_or_404(request, order_id)
        form = ReviewSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        order = services.purchase_order_review(
            order=order,
            user=request.user,
            fields=form.validated_data["fields"],
            lines=form.validated_data["lines"],
        )
        return order_and_job(order, status.HTTP_202_ACCEPTED)


class PurchaseOrderRetryView(APIView):
    permission_classes = [IsMember]

    @extend_schema(request=None, responses={202: OrderAndJobSerializer})
    def post(self, request: Request, order_id: int) -> Response:
        order = services.purchase_order_retry(order=order_or_404(request, order_id))
        return order_and_job(order, status.HTTP_202_ACCEPTED)


class StoreSerializer(serializers.Serializer):
    url = serializers.CharField(required=False, allow_blank=True, max_length=500)
    secret = serializers.CharField(
        required=False, allow_blank=True, max_length=200, write_only=True
    )


def store_body(store: StoreConnection | None) -> dict[str, Any]:
    # the secret is never sent back: only whether one is set
    return {
        # credentials and query values in it stay with the store: every member reads this
        "url": redacted(store.url) if store else "",
        "secret_set": bool(store and store.secret),
        "updated_at": store.updated_at if store else None,
    }


class StoreConnectionView(APIView):
    """Members read the store connection; organization admins change it."""

    permission_classes = [IsMember]
    parser_classes = [JSONParser]

    @extend_schema(responses={200: StoreBodySerializer})
    def get(self, request: Request) -> Response:
        org = request_membership(request).organization
        return Response(store_body(StoreConnection.objects.filter(organization=org).first()))

    @extend_schema(request=StoreSerializer, responses={200: StoreBodySerializer})
    def patch(self, request: Request) -> Response:
        membership = request_membership(request)
        form = StoreSerializer(data=request.data)
        if not form.is_valid():
            raise ValidationError(form.errors)
        store = services.store_connection_update(
            organization=membership.organization,
            user=request.user,
            url=form.validated_data.get("url"),
            secret=form.validated_data.get("secret"),
        )
        return Response(store_body(store))
