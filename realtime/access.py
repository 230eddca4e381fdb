"""Who is on the other end of a stream, which topics they may follow, and how many streams.

Browsers use the session cookie; integrations a DRF token in the ``Authorization`` header; a URL
may carry only a short-lived signed stream token (``?token=``), scoped to a user, an
organization and topics, never an API token. A topic of another tenant is answered exactly like
a topic that does not exist.

Which organization a user acts for, and which topics exist, come from the apps through
``realtime.topics`` (``register_membership``, ``register``): this module imports no app.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.http.cookie import parse_cookie

from . import events
from . import topics as registry
from .redis import async_client

TOKEN_SALT = "intake.realtime.stream-token"
MAX_TOKEN_TTL = 600
# topics per stream token, per subscription and per connection: each is a hub subscription and
# an authorization query, so a client may not ask for thousands
MAX_TOPICS = 100


class AccessDenied(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Principal:
    user_id: int
    organization_id: int
    role: str
    topics: frozenset[str] | None = None  # a stream token's scope; None: any of the org's


def issue_stream_token(
    *, user_id: int, organization_id: int, topics: list[str], ttl: int = MAX_TOKEN_TTL
) -> tuple[str, int]:
    ttl = max(1, min(int(ttl), MAX_TOKEN_TTL))
    expires = int(time.time()) + ttl
    token = signing.dumps(
        {"u": user_id, "o": organization_id, "t": topics, "e": expires}, salt=TOKEN_SALT
    )
    return token, expires


def read_stream_token(token: str) -> dict[str, Any]:
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=MAX_TOKEN_TTL)
    except signing.SignatureExpired:
        raise AccessDenied("The stream token has expired; ask for a new one.")
    except signing.BadSignature:
        if len(token) == 40 and token.isalnum():
            raise AccessDenied(
                "API tokens are not accepted in URLs; send them in the Authorization header "
                "or use a stream token from POST /api/v1/realtime/tokens."
            )
        raise AccessDenied("The stream token is not valid.")
    if data.get("e", 0) < time.time():
        raise AccessDenied("The stream token has expired; ask for a new one.")
    return data


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def query(scope: dict[str, Any]) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {k: v[-1] for k, v in parsed.items()}


def principal_for(user_id: int, organization: str | None) -> Principal:
    """The principal of a signed-in user (session or API token) acting for ``organization``
    (an id or slug they named, or None for their default organization)."""
    try:
        member = registry.membership(user_id, organization or None)
    except ValueError as exc:  # a malformed selector: the lookup's message names it
        raise AccessDenied(str(exc), status=400) from exc
    if member is None:
        raise AccessDenied(
            "You are not a member of this organization."
            if organization
            else "Your account belongs to no organization; ask an admin to add you to one.",
            status=403,
        )
    return Principal(user_id, member.organization_id, member.role)


def principal_from_stream_token(token: dict[str, Any]) -> Principal:
    member = registry.membership(token["u"], str(token["o"]))
    if member is None:
        raise AccessDenied("The stream token's user no longer belongs to the organization.")
    return Principal(token["u"], member.organization_id, member.role, frozenset(token["t"]))


@database_sync_to_async
def _principal(
    user_id: int | None, token_key: str | None, wanted_org: str | None, token: dict | None
) -> Principal:
    from rest_framework.authtoken.models import Token

    if token is not None:
        return principal_from_stream_token(token)
    if token_key is not None:
        found = Token.objects.select_related("user").filter(key=token_key).first()
        if found is None or not found.user.is_active:
            raise AccessDenied("Invalid API token.")
        user_id = found.user_id
    if user_id is None:
        raise AccessDenied("Authentication credentials were not provided.")
    return principal_for(user_id, wanted_org)


async def authenticate(scope: dict[str, Any]) -> Principal:
    params = query(scope)
    if params.get("token"):
        return await _principal(None, None, None, read_stream_token(params["token"]))
    # as in the API: the header, else the parameter, whatever the authentication
    wanted = _header(scope, b"x-organization") or params.get("organization")
    auth = _header(scope, b"authorization")
    if auth:
        kind, _, key = auth.partition(" ")
        if kind.lower() != "token" or not key.strip():
            raise AccessDenied("Use 'Authorization: Token <key>'.")
        return await _principal(None, key.strip(), wanted, None)
    user = scope.get("user")
    user_id = user.pk if user is not None and user.is_authenticated else None
    return await _principal(user_id, None, wanted, None)


class SessionUserMiddleware:
    """``scope["user"]`` from the session cookie, as channels' ``AuthMiddlewareStack`` sets it,
    without wrapping ``send``.

    Streams never write the session, yet channels' session wrapper inspects every message sent:
    at a thousand connections that check was a tenth of daphne's fan-out time. A request
    without a session cookie (token clients) is anonymous at once, without a database hop.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = parse_cookie(_header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME)
        scope = dict(scope, user=AnonymousUser())
        if key:
            scope["session"] = import_module(settings.SESSION_ENGINE).SessionStore(key)
            scope["user"] = await get_user(scope)
        return await self.app(scope, receive, send)


# ---------------------------------------------------------------------- topics


def covers_organization(principal: Principal) -> bool:
    """Whether ``principal`` may read its organization as a whole (the feed, the summary): a
    stream token scoped to some jobs may not."""
    scope = principal.topics
    return scope is None or events.org_topic(principal.organization_id) in scope


def topic_allowed_sync(principal: Principal, topic: str) -> bool:
    """May ``principal`` follow ``topic``? Malformed, unknown, out-of-scope and foreign topics
    all answer False (the caller says 404 alike)."""
    if principal.topics is not None and topic not in principal.topics:
        return False
    found = registry.parse(topic)
    if found is None:
        return False
    kind, ident = found
    return bool(kind.authorize(ident, principal.organization_id))


topic_allowed = database_sync_to_async(topic_allowed_sync)


# ---------------------------------------------------------------------- stream limit


class StreamSlot:
    """A user's open-stream count, shared by every daphne process through Redis."""

    def __init__(self, user_id: int) -> None:
        self.key = f"intake:streams:user:{user_id}"
        self.member = uuid.uuid4().hex
        self.ttl = int(3 * heartbeat_seconds()) + 30

    async def acquire(self) -> bool:
        r = async_client()
        now = time.time()
        async with r.pipeline() as pipe:
            pipe.zremrangebyscore(self.key, 0, now)
            pipe.zcard(self.key)
            _, count = await pipe.execute()
        if count >= settings.REALTIME["MAX_STREAMS_PER_USER"]:
            return False
        async with r.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, {self.member: now + self.ttl})
            pipe.expire(self.key, self.ttl)
            await pipe.execute()
        return True

    async def refresh(self) -> None:
        await async_client().zadd(self.key, {self.member: time.time() + self.ttl}, xx=True)

    async def release(self) -> None:
        await async_client().zrem(self.key, self.member)


# how often an open stream asks whether its user still belongs to the organization
MEMBERSHIP_CHECK_SECONDS = 60.0


@database_sync_to_async
def still_member(principal: Principal) -> bool:
    """Whether ``principal``'s user is still an active member of its organization: a stream
    opened before the user was removed (or deactivated) must not go on carrying the
    organization's events, nor a WebSocket subscribe to more of them."""
    return registry.membership(principal.user_id, str(principal.organization_id)) is not None


def heartbeat_seconds() -> float:
    return float(settings.REALTIME["HEARTBEAT_SECONDS"])
