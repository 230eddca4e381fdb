"""The request-body limit, enforced while the body arrives rather than after it is stored.

Django checks an upload's size only once the whole body is in, and under daphne the body is
first received whole by Twisted (spooled to a temporary file) before the application sees a
byte of it: a client could send gigabytes, with or without a ``Content-Length`` (chunked), and
fill the disk before any 413. Two layers, both answering 413 with a body that names the limit:

- ``install_daphne`` hooks daphne's request (a Twisted ``Request``): a declared
  ``Content-Length`` over the limit is refused as soon as the headers are in, and a body that
  grows past it (chunked, or a ``Content-Length`` that lies) is refused at the chunk that
  crosses it. What was received is dropped, nothing more is stored, and the connection closes.
- ``BodyLimitMiddleware`` does the same in ASGI for any other server (uvicorn, hypercorn
  stream the body to the application as it arrives).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

# room for the multipart envelope and the form's other fields around the file itself
ENVELOPE_BYTES = 64 * 1024
# how long a refused connection stays open (reading nothing more) so that the client can read
# the 413 before the socket closes (closing with unread input sends a TCP reset)
LINGER_SECONDS = 2.0


def body_limit() -> int:
    return settings.IMPORT_MAX_UPLOAD_BYTES + ENVELOPE_BYTES


def refusal() -> bytes:
    """The 413's JSON body, naming the limit."""
    limit_mb = settings.IMPORT_MAX_UPLOAD_BYTES / (1024 * 1024)
    return json.dumps(
        {"detail": f"Request body is larger than the {limit_mb:g} MB upload limit."}
    ).encode()


def _declared_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and text.isascii() else None
    return None


class BodyLimitMiddleware:
    """ASGI: refuse an HTTP request whose body is, or becomes, larger than the limit."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit()
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            return await self._refuse(send)
        received = 0
        refused = False

        # Only ``receive`` is wrapped: ``send`` must stay daphne's own (the streams' direct
        # writes recognise it), and every application here (Django, the SSE consumers) reads
        # the whole body before it starts a response, so the 413 is never a second response.
        async def limited_receive() -> dict[str, Any]:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await self._refuse(send)
                    # the application sees the client go away (Django: RequestAborted)
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(send: Any) -> None:
        body = refusal()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def install_daphne() -> None:
    """Enforce the limit inside daphne's Twisted request, as the bytes arrive. Only in a
    process where daphne is loaded; idempotent."""
    if "daphne.http_protocol" not in sys.modules:
        return
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_intake_body_limit", False):
        return
    got_length = WebRequest.gotLength
    content_chunk = WebRequest.handleContentChunk
    request_received = WebRequest.requestReceived

    def refuse(request: Any) -> None:
        request._intake_refused = True
        body = refusal()
        transport = request.channel.transport
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + body
        )
        # drop what was stored of the body, and read no more of it: the client's sends stall
        # (TCP flow control) while it can still read the 413; then the connection closes
        request.content.close()
        transport.pauseProducing()
        from twisted.internet import reactor

        reactor.callLater(LINGER_SECONDS, transport.loseConnection)
        log.warning("Refused a request body over %d bytes", body_limit())

    def gotLength(self: Any, length: int | None) -> None:
        self._intake_received = 0
        self._intake_refused = False
        got_length(self, length)
        if length is not None and length > body_limit():
            refuse(self)

    def handleContentChunk(self: Any, data: bytes) -> None:
        if self._intake_refused:
            return
        self._intake_received += len(data)
        if self._intake_received > body_limit():
            refuse(self)
            return
        content_chunk(self, data)

    def requestReceived(self: Any, command: bytes, path: bytes, version: bytes) -> None:
        if getattr(self, "_intake_refused", False):
            return  # answered already: the application never sees it
        request_received(self, command, path, version)

    WebRequest.gotLength = gotLength
    WebRequest.handleContentChunk = handleContentChunk
    WebRequest.requestReceived = requestReceived
    WebRequest._intake_body_limit = True
