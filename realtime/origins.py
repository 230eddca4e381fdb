"""Which WebSocket handshakes may go on, by their ``Origin`` header.

The check exists against cross-site WebSocket hijacking: a page on another site opening a socket
that rides the visitor's session cookie. Browsers always send ``Origin``, so a handshake without
one comes from a program (Python ``websockets``, server-side code) that has no visitor's cookie
to ride and must authenticate itself (a token): it may go on. channels'
``AllowedHostsOriginValidator`` refuses it with 403 before any authentication runs.

An ``Origin`` that is sent must be one of:

- the site itself: the origin's host and port are the request's ``Host``, which is one of
  ``ALLOWED_HOSTS`` (and its scheme matches the connection's, where the server says which);
- one of ``CORS_ALLOWED_ORIGINS``, scheme, host and port alike (``http://localhost:3000`` does
  not admit ``https://localhost:3000`` nor ``http://localhost:3001``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SCHEME_OF_CONNECTION = {"ws": "http", "wss": "https"}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _origin(raw: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an ``Origin`` value, or None for ``null`` and garbage."""
    try:
        parts: SplitResult = urlsplit(raw.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _same_site(scope: dict[str, Any], origin: tuple[str, str, int]) -> bool:
    host = (_header(scope, b"host") or "").strip().lower()
    domain, port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    scheme, origin_host, origin_port = origin
    expected = SCHEME_OF_CONNECTION.get(scope.get("scheme", ""))
    if expected is not None and scheme != expected:
        return False
    # a Host without a port is the default port of whatever scheme the browser used
    return origin_host == domain.strip("[]") and origin_port == (
        int(port) if port else DEFAULT_PORTS[scheme]
    )


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]  # Django's own default under DEBUG
    return hosts


def _cors_origin(origin: tuple[str, str, int]) -> bool:
    return any(_origin(allowed) == origin for allowed in settings.CORS_ALLOWED_ORIGINS)


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake may go on, judged by its ``Origin`` alone."""
    raw = _header(scope, b"origin")
    if raw is None:
        return True  # not a browser: it authenticates with a token, there is no cookie to ride
    origin = _origin(raw)
    return origin is not None and (_same_site(scope, origin) or _cors_origin(origin))


class OriginValidator:
    """ASGI middleware for the WebSocket routes: refuse (403) a handshake whose ``Origin`` is
    neither this site nor a CORS origin; let one without ``Origin`` through to authentication."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
