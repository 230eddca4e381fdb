"""Which hosts the workers may call (store sync, image fetches): ``SYNC_ALLOWED_HOSTS``.

Empty (the default): any host whose every resolved address is public — loopback, private,
link-local, multicast, reserved and unspecified addresses are refused, so a URL typed into the
store settings or an image URL in a supplier's file cannot reach the internal network.
Set: only the listed hosts (``shop.example.com``, ``.example.com`` for its subdomains,
``127.0.0.1``), whatever their addresses: an operator who lists a host means it.

``check_url`` answers early, with a message for the user. ``client()`` enforces the same rule
where it counts: its connections resolve the host themselves, judge every address, and connect
to an address they judged. A name that resolved to a public address for the check and to
127.0.0.1 for the call (DNS rebinding) is refused at the connect. Inside ``deadline(seconds)``,
every connect, TLS handshake, read and write of its calls ends by then: a server that sends a
byte just before each read's timeout (headers included) cannot hold a worker for hours.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
from django.conf import settings


class OutboundRefused(Exception):
    """The URL may not be called; the message is for the user."""


def _listed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry.startswith(".") and (host.endswith(entry) or host == entry[1:]):
            return True
        if host == entry:
            return True
    return False


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # an IPv4 address inside an IPv6 one reaches that IPv4 host: judge it
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return _public(str(embedded))
        if ip.is_site_local:  # fec0::/10, deprecated but still routed inside some networks
            return False
    # is_global also refuses what is neither private nor reserved yet never on the internet:
    # the shared address space 100.64.0.0/10 (carrier NAT, cloud metadata at 100.100.100.200)
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def redacted(url: str) -> str:
    """``url`` as it may be shown and logged: credentials in it (``https://key:pass@shop``) and
    query values (``?token=…``) as ``***``. The store's own URL keeps them for the calls."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{pair.split('=', 1)[0]}=***" if "=" in pair else pair for pair in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def check_url(url: str, *, what: str = "URL") -> str:
    """Return the host of ``url`` if a worker may call it, else raise ``OutboundRefused``."""
    try:
        # urlsplit raises ValueError on a broken IPv6 literal ('http://[::1'), .port on a port
        # that is not a number or out of range: both are the caller's bad URL, not a crash
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"The {what} is not a valid URL ({exc}): '{url[:200]}'.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"The {what} must be an http(s) URL with a host (got '{url[:200]}').")
    try:
        # the host exactly as httpx will connect to it: its IDNA 2008 form. socket's own
        # encoding (IDNA 2003) made another name of 'straße.example' (strasse.example) than
        # httpx's (xn--strae-oqa.example): one checked, the other called
        host = httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise OutboundRefused(f"The {what}'s host is not a valid host name ({exc}).") from exc
    try:
        _judged(host, port or 443)
    except OutboundRefused as exc:
        raise OutboundRefused(f"The {what}'s {exc}") from exc
    return host


def _judged(host: str, port: int) -> list[str] | None:
    """The addresses a call to ``host`` may connect to: None for a host listed in
    ``SYNC_ALLOWED_HOSTS`` (whatever it resolves to), else all it resolves to, every one public.
    Else ``OutboundRefused``, whose message ends "The URL's ..." (``check_url``)."""
    allowed = [h for h in settings.SYNC_ALLOWED_HOSTS if h.strip()]
    if allowed:
        if _listed(host, allowed):
            return None
        raise OutboundRefused(f"host '{host}' is not in SYNC_ALLOWED_HOSTS ({', '.join(allowed)}).")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundRefused(f"host '{host}' does not resolve ({exc}).") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses or not all(map(_public, addresses)):
        # which addresses is not said: an image URL in a supplier's file would map the
        # internal network's names through the line's warning
        raise OutboundRefused(
            f"host '{host}' resolves to a loopback, private or link-local address, or another "
            "that is not public; list it in SYNC_ALLOWED_HOSTS to allow it."
        )
    return addresses


_DEADLINE: ContextVar[float | None] = ContextVar("outbound_deadline", default=None)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Calls made by ``client()`` in this block (this thread) end within ``seconds`` in all."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout``, cut to what is left before the deadline (if one is set)."""
    ends = _DEADLINE.get()
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise error("the call's time is up")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the current call's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Connects only to addresses the outbound rules allow, resolved once, here."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            # judged again here, by the same rule: the name may answer otherwise than it did
            # for the URL's check
            addresses = _judged(host, port)
        except OutboundRefused as exc:
            raise httpcore.ConnectError(f"The connection's {exc}") from exc
        if addresses is None:  # listed: connect by name
            return self._connect(host, port, timeout, local_address, socket_options)
        last: Exception | None = None
        for address in addresses:  # the judged addresses, in the resolver's order
            try:
                return self._connect(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def _connect(
        self,
        host: str,
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Any,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = super().connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)


def client(*, verify: ssl.SSLContext | bool = True, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose connections obey the outbound rules at connect time.

    No proxy from the environment: the rules judge the host called, and a proxy would be
    judged instead of it. TLS still verifies the URL's host name: only the address is pinned
    (``verify``: as httpx takes it; a test's own certificate authority).
    """
    transport = httpx.HTTPTransport(trust_env=False)
    # httpx takes no network backend of its own; its pool is httpcore's, which does
    limits = httpx.Limits()  # httpx's defaults, which httpcore's pool does not share
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_GuardedBackend(),
    )
    return httpx.Client(transport=transport, trust_env=False, **kwargs)
