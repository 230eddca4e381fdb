"""Stream tokens, the polling endpoint and Prometheus metrics."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from . import log, metrics
from .access import (
    MAX_TOKEN_TTL,
    MAX_TOPICS,
    AccessDenied,
    Principal,
    issue_stream_token,
    principal_for,
    principal_from_stream_token,
    read_stream_token,
    topic_allowed_sync,
)
from .topics import IDENT_RE, PREFIX_RE

# any registered kind's topic: <prefix>:<ident>
TOPIC_PATTERN = f"{PREFIX_RE.pattern[:-1]}:{IDENT_RE.pattern[1:]}"


class StreamToken:
    """``request.auth`` of a request authenticated by a stream token in the URL."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data


class StreamTokenAuthentication(BaseAuthentication):
    """``?token=<stream token>``: what an EventSource-based client falls back to polling with.
    Only where a stream is read (polling), and only within the token's topics."""

    def authenticate(self, request: Request) -> tuple[Any, StreamToken] | None:
        raw = request.query_params.get("token")
        if not raw:
            return None
        try:
            data = read_stream_token(raw)
        except AccessDenied as exc:
            raise AuthenticationFailed(exc.message)
        user = get_user_model().objects.filter(pk=data["u"], is_active=True).first()
        if user is None:
            raise AuthenticationFailed("The stream token's user is no longer active.")
        return user, StreamToken(data)

    def authenticate_header(self, request: Request) -> str:
        return "Token"


def _principal(request: Request) -> Principal:
    """The caller as the streams see them, through the registered membership lookup."""
    cached = getattr(request, "_realtime_principal", None)
    if cached is not None:
        return cached
    wanted = request.headers.get("X-Organization") or request.query_params.get("organization")
    try:
        if isinstance(request.auth, StreamToken):
            principal = principal_from_stream_token(request.auth.data)
        else:
            principal = principal_for(request.user.pk, wanted)
    except AccessDenied as exc:
        if exc.status == 400:
            raise ValidationError({"organization": [exc.message]})
        raise PermissionDenied(exc.message)
    request._realtime_principal = principal
    return principal


class IsMember(BasePermission):
    """Any member of an organization: streams, tokens and polling only read, so every role may
    use them for what it may read."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        _principal(request)
        return True


class TokenRequest(serializers.Serializer):
    topics = serializers.ListField(
        child=serializers.RegexField(TOPIC_PATTERN, max_length=80),
        min_length=1,
        max_length=MAX_TOPICS,
        error_messages={"max_length": f"At most {MAX_TOPICS} topics per stream token."},
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
        topics = list(dict.fromkeys(form.validated_data["topics"]))  # each once, in order
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


_WHOLE = re.compile(r"[0-9]{1,9}")


def whole_number(raw: Any) -> int | None:
    """``raw`` as an int when it is plain ASCII digits (``"²".isdigit()`` is true), else None."""
    return int(raw) if isinstance(raw, str) and _WHOLE.fullmatch(raw.strip()) else None


# Each event carries a full job snapshot (up to tens of kB): an answer holds a bounded number.
POLL_DEFAULT = 100
POLL_MAX = 500


class PollView(APIView):
    """The stream's events as JSON, for clients that poll; the same cursor as the streams.
    Takes the stream token of a client that falls back from its stream (``?token=``)."""

    authentication_classes = [
        StreamTokenAuthentication,
        *api_settings.DEFAULT_AUTHENTICATION_CLASSES,
    ]
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
            OpenApiParameter(
                "token", str, description="A stream token (instead of a session or API token)"
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
