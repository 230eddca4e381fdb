"""One error shape for the API: ``{"detail": "..."}`` with the right status, never a 500."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .services import ServiceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        # some carry what a client needs to resend (a column mapping's proposal)
        return Response(
            {"detail": exc.message, **getattr(exc, "payload", {})}, status=exc.status_code
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        # a statement or lock timeout, or the database restarting: not the request's fault
        return Response(
            {"detail": "The database did not answer in time; try again in a moment."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, DataError) and (
        "NUL" in str(exc) or "unsupported Unicode escape sequence" in str(exc)  # jsonb's words
    ):
        # a NUL byte from the request in a filter or a field: PostgreSQL refuses it in text
        return Response(
            {"detail": "A value in the request contains a NUL character, which is not accepted."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, RecursionError) and "JSON" in str(exc):
        # json.loads of '[[[[…' thousands deep: DRF's JSONParser lets the RecursionError through
        return Response(
            {"detail": "The JSON body is nested too deeply."}, status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": "Request body is too large."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if isinstance(exc, ValidationError) and response is not None:
        # one sentence for people, the per-field detail for programs
        response.data = {"detail": " ".join(_flatten(exc.detail)), "errors": exc.detail}
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: under /api/ a 404 is JSON in the error shape (a URL that matches no route,
    such as a negative id), elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": f"No such API endpoint or object: {request.path}"}, status=404
        )
    return page_not_found(request, exception)


def _flatten(detail: Any, field: str = "") -> list[str]:
    if isinstance(detail, dict):
        return [m for key, value in detail.items() for m in _flatten(value, str(key))]
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, field)]
    text = str(detail)
    return [f"{field}: {text}" if field and field != "non_field_errors" else text]
