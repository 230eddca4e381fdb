"""Stream tokens, the polling endpoint and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from imports.pagination import whole_number
from imports.tenancy import IsMember, request_membership

from . import log, metrics
from .access import MAX_TOKEN_TTL, Principal, issue_stream_token, topic_allowed_sync
from .events import TOPIC_RE

TOPIC_PATTERN = TOPIC_RE.pattern  # job:<id>, org:<id>, bom:<id>


def _principal(request: Request) -> Principal:
    membership = request_membership(request)
    return Principal(request.user.pk, membership.organization_id, membership.role)


class TokenRequest(serializers.Serializer):
    topics = serializers.ListField(
        child=serializers.RegexField(TOPIC_PATTERN, max_length=80),
        min_length=1,
        max_length=50,
    )
    ttl = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TOKEN_TTL)


class StreamTokenView(APIView):
    """A short-lived signed token for ``?token=`` on stream URLs (EventSource sets no headers)."""

    permission_classes = [IsMember]

    @extend_schema(request=TokenRequest, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        form = TokenRequest(data=request.data)
        form.is_valid(raise_exception=True)
        principal = _principal(request)
        topics = form.validated_data["topics"]
        for topic in topics:
            if not topic_allowed_sync(principal, topic):
                raise NotFound(f"No such topic: {topic}")
        token, expires = issue_stream_token(
            user_id=principal.user_id,
            organization_id=principal.organization_id,
            topics=topics,
            ttl=form.validated_data.get("ttl", MAX_TOKEN_TTL),
        )
        return Response(
            {"token": token, "expires_at": expires, "topics": topics},
            status=status.HTTP_201_CREATED,
        )


# Each event carries a full job snapshot (up to tens of kB): an answer holds a bounded number.
POLL_DEFAULT = 100
POLL_MAX = 500


class PollView(APIView):
    """The stream's events as JSON, for clients that poll; the same cursor as the streams."""

    permission_classes = [IsMember]

    @extend_schema(
        parameters=[
            OpenApiParameter("topic", {"type": "string", "pattern": TOPIC_PATTERN}, required=True),
            OpenApiParameter(
                "after", {"type": "string", "pattern": r"^[0-9]{1,19}(-[0-9]{1,19})?$"}
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 0},
                description=f"Events per answer: {POLL_DEFAULT} by default, at most {POLL_MAX}; "
                "poll again from the returned cursor for more.",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        topic = request.query_params.get("topic", "")
        after = request.query_params.get("after") or None
        limit = whole_number(request.query_params.get("limit")) or POLL_DEFAULT
        if not topic:
            raise ValidationError({"topic": "topic is required (job:<id>, org:<id>)."})
        if after and not log.valid_cursor(after):
            raise ValidationError({"after": f"'{after}' is not an event id (<ms>-<seq>)."})
        if not topic_allowed_sync(_principal(request), topic):
            raise NotFound(f"No such topic: {topic}")
        replay = log.read_after(topic, after, count=min(limit, POLL_MAX))
        body: dict[str, Any] = {"topic": topic, "events": replay.events, "reset": replay.gap}
        body["cursor"] = replay.events[-1]["id"] if replay.events else (after or log.last_id(topic))
        return Response(body)


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.REALTIME["METRICS_TOKEN"]
    auth = request.headers.get("Authorization", "")
    staff = request.user.is_authenticated and request.user.is_staff
    if not staff and not (token and auth == f"Bearer {token}"):
        return HttpResponse(
            "metrics need a staff session or the metrics token\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")
