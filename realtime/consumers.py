"""The SSE endpoints: thin shells over ``streams.ClientStream`` (the WebSocket consumer is in
``realtime.websocket``).

The SSE endpoints are plain ASGI applications rather than ``AsyncHttpConsumer``: in channels 4.3
that consumer stops as soon as ``handle()`` returns (django/channels#1747), and it only
dispatches layer messages after ``handle()`` returns. Here one task streams and another waits
for ``http.disconnect``, so a client that goes away is noticed at once and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from . import daphne_compat, events, log, topics
from .access import (
    MAX_TOPICS,
    MEMBERSHIP_CHECK_SECONDS,
    AccessDenied,
    Principal,
    StreamSlot,
    authenticate,
    covers_organization,
    heartbeat_seconds,
    query,
    still_member,
    topic_allowed,
)
from .metrics import metrics
from .status import status_feed
from .streams import (
    ClientStream,
    Outgoing,
    StreamClosed,
    heartbeat,
    job_id_of,
    state_shows_end,
)

logger = logging.getLogger(__name__)

PADDING = b":" + b" " * 2048 + b"\n\n"  # pushes the stream through buffering proxies at once


# Past this many bytes that a client's socket has not taken yet, its stream stops writing and
# lets events wait in its bounded queue (checked again every UNSENT_POLL_SECONDS).
UNSENT_LIMIT = 64 * 1024
UNSENT_POLL_SECONDS = 0.05


def nothing_unsent() -> int:
    return 0


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


async def snapshot(topic: str) -> dict[str, Any] | None:
    """The current state behind a topic (sent as ``snapshot`` or ``reset``), as the topic's
    registered kind builds it."""
    found = topics.parse(topic)
    if found is None:
        return None
    kind, ident = found
    return await database_sync_to_async(kind.snapshot)(ident)


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def request_cursor(scope: dict[str, Any]) -> str | None:
    raw = _headers(scope).get(b"last-event-id", b"").decode("latin-1").strip()
    raw = raw or query(scope).get("last_event_id", "").strip()
    if not raw:
        return None
    if not log.valid_cursor(raw):
        raise HttpError(400, f"'{raw}' is not an event id (expected <ms>-<seq>).")
    return raw


async def _send_json(send: Any, status: int, body: dict[str, Any] | None) -> None:
    payload = json.dumps(body).encode() if body is not None else b""
    headers = [(b"content-type", b"application/json")] if body is not None else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class SSEEndpoint:
    """Authenticate, plan, then stream until the client leaves (or the plan says stop)."""

    close_on_terminal = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            principal = await authenticate(scope)
            stream = ClientStream(max_queue=settings.REALTIME["QUEUE_SIZE"])
            start = await self.plan(scope, principal, stream)
        except AccessDenied as exc:
            return await _send_json(send, exc.status, {"detail": exc.message})
        except HttpError as exc:
            if exc.status == 204:
                return await _send_json(send, 204, None)
            return await _send_json(send, exc.status, {"detail": exc.detail})
        slot = StreamSlot(principal.user_id)
        if not await slot.acquire():
            limit = settings.REALTIME["MAX_STREAMS_PER_USER"]
            return await _send_json(
                send, 429, {"detail": f"At most {limit} open streams per user; close one first."}
            )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        retry = f"retry: {settings.REALTIME['RETRY_MS']}\n\n".encode()
        await send({"type": "http.response.body", "body": PADDING + retry, "more_body": True})
        metrics.inc("streams_opened", "sse")
        write_chunk = daphne_compat.chunk_writer(send)
        if write_chunk is not None:
            stream.direct = self._direct_writer(stream, write_chunk)
        unsent = daphne_compat.unsent_bytes(send) or nothing_unsent
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    stream.wake()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await start()
            await self._pump(stream, send, gone, slot, unsent, principal)
        except StreamClosed:
            await self._send_reset_and_close(stream, send)
        except Exception:
            logger.exception("SSE stream failed")
        finally:
            watcher.cancel()
            await stream.close()
            await slot.release()
            metrics.inc("streams_closed", "sse")
            if not gone.is_set():
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(
        self,
        stream: ClientStream,
        send: Any,
        gone: asyncio.Event,
        slot: StreamSlot,
        unsent: Callable[[], int],
        principal: Principal,
    ) -> None:
        beat = heartbeat_seconds()
        clock = asyncio.get_running_loop().time
        next_beat = clock() + beat
        next_check = clock() + MEMBERSHIP_CHECK_SECONDS
        while not gone.is_set():
            # a client that reads slowly: let its events wait in the stream's queue (where
            # progress coalesces, and too many stage events end in a reset), not in Twisted's
            # buffer, which has no limit
            if unsent() > UNSENT_LIMIT:
                stream.backed_up = True  # only now may its progress events coalesce
                while unsent() > UNSENT_LIMIT and not (gone.is_set() or stream.overflowed):
                    await asyncio.sleep(UNSENT_POLL_SECONDS)
                stream.backed_up = False
            item = await stream.next_until(next_beat)
            if gone.is_set() or stream.ended:
                return
            if item is None:
                if clock() >= next_beat:
                    await send(
                        {"type": "http.response.body", "body": heartbeat().sse(), "more_body": True}
                    )
                    metrics.inc("events_delivered", "heartbeat")
                    await slot.refresh()
                    next_beat = clock() + beat
                    if clock() >= next_check:
                        if not await still_member(principal):
                            return  # removed from the organization: its reconnect gets 403
                        next_check = clock() + MEMBERSHIP_CHECK_SECONDS
                continue
            # Whatever else is already queued goes out in the same write: one ASGI message
            # (and one socket write) for a backlog, not one per event.
            batch = [item]
            while len(batch) < 64 and not (self.close_on_terminal and batch[-1].terminal):
                more = stream.next_nowait()
                if more is None:
                    break
                batch.append(more)
            body = b"".join(i.sse() for i in batch)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            metrics.delivered(batch)
            if self.close_on_terminal and batch[-1].terminal:
                # Closing a stream costs daphne far more than a write. Every stream on the job
                # was woken by this event in the same loop turn: let them all send it before
                # any of them closes (a thousand closes first put the last send 300 ms late).
                await asyncio.sleep(0)
                return

    def _direct_writer(
        self, stream: ClientStream, write_chunk: Callable[..., bool]
    ) -> Callable[[Sequence[Outgoing]], bool]:
        """Write events now (``ClientStream.direct``). A stream that closes after its terminal
        event ends the response's body in the same write; the pump then closes it."""
        close_on_terminal = self.close_on_terminal

        def direct(items: Sequence[Outgoing]) -> bool:
            data = (
                items[0].sse_chunk() if len(items) == 1 else b"".join(i.sse_chunk() for i in items)
            )
            try:
                if not write_chunk(data, close_on_terminal and items[-1].terminal):
                    return False  # queued instead: the pump sends it the usual way
            except Exception:
                return False  # queued instead: the pump's own send reports what is wrong
            for item in items:
                metrics.delivered_one(item)
                if close_on_terminal and item.terminal:
                    stream.end()
            return True

        return direct

    async def _send_reset_and_close(self, stream: ClientStream, send: Any) -> None:
        for topic in list(stream.topics):
            env = events.envelope("", "reset", topic, events.now_iso(), {"reason": "too_slow"})
            env.pop("id")
            metrics.inc("resets", "too_slow")
            body = f"event: reset\ndata: {events.dumps(env)}\n\n".encode()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": body, "more_body": True})

    async def plan(self, scope: dict[str, Any], principal: Principal, stream: ClientStream):
        """Check the request; return the coroutine function that subscribes the stream."""
        raise NotImplementedError


class TopicEventsSSE(SSEEndpoint):
    """``GET /api/v1/realtime/topics/{topic}/events``: one topic of any registered kind, its
    current snapshot first; closes after the kind's terminal event (or at once when the
    snapshot shows it has ended)."""

    close_on_terminal = True
    not_found = "No such topic."

    def topic(self, scope: dict[str, Any]) -> str:
        return scope["url_route"]["kwargs"]["topic"]

    async def plan(self, scope, principal, stream):
        topic = self.topic(scope)
        if not await topic_allowed(principal, topic):
            raise HttpError(404, self.not_found)
        cursor = request_cursor(scope)
        if cursor:
            last = await database_sync_to_async(log.last_event)(topic)
            if (
                last
                and last["id"] == cursor
                and topics.may_end(topic, last["type"])
                and await state_shows_end(topic, job_id_of(last), snapshot)
            ):
                raise HttpError(204, "")  # the client has the end: stop EventSource retrying

        async def start() -> None:
            await stream.subscribe(topic, cursor, snapshot, initial=True)

        return start


class JobEventsSSE(TopicEventsSSE):
    """``GET /api/v1/jobs/{id}/events``: the stream of ``job:<id>``."""

    not_found = "No such job."

    def topic(self, scope: dict[str, Any]) -> str:
        # as the API writes it (lower case): events are published under that form
        ident = scope["url_route"]["kwargs"]["job_id"]
        try:
            return events.job_topic(uuid.UUID(ident))
        except ValueError:
            return events.job_topic(ident)  # not a job id (36 hex digits and hyphens): 404


class ActivitySSE(SSEEndpoint):
    """``GET /api/v1/realtime/events``: the organization's feed, optionally some jobs only.

    ``?summary=1`` adds the import-status summaries (``event: status``, as the summary stream
    sends them, honouring ``poll_interval`` and ``limit``) so that a dashboard needs one
    connection, not two: browsers allow six per host.
    """

    async def plan(self, scope, principal, stream):
        params = query(scope)
        topic = events.org_topic(principal.organization_id)
        wanted = list(dict.fromkeys(t.strip() for t in params.get("topics", "").split(",")))
        wanted = [t for t in wanted if t]
        if len(wanted) > MAX_TOPICS:
            raise HttpError(400, f"At most {MAX_TOPICS} topics per stream (got {len(wanted)}).")
        if wanted:
            # narrowed to some jobs: a stream token for those jobs is enough
            for t in wanted:
                if topics.parse(t) is not None and not t.startswith("job:"):
                    # the feed carries every kind's events, but is narrowed by job only
                    raise HttpError(
                        400,
                        f"The organization feed narrows to jobs only (job:<id>); follow {t} "
                        f"at /api/v1/realtime/topics/{t}/events or over the WebSocket.",
                    )
                if not await topic_allowed(principal, t):
                    raise HttpError(404, f"No such topic: {t}")
            stream.job_filter = {t.partition(":")[2] for t in wanted}
        elif not covers_organization(principal):
            raise HttpError(403, not_covered(principal, "feed"))
        elif not await topic_allowed(principal, topic):
            raise HttpError(404, "No such topic.")
        cursor = request_cursor(scope)
        summary_key = None
        if params.get("summary", "").lower() in ("1", "true", "yes"):
            if not covers_organization(principal):
                raise HttpError(403, not_covered(principal, "summary"))
            summary_key = status_key(params, principal)

            async def stop() -> None:
                await status_feed(summary_key).leave(stream)

            stream.on_close = stop

        async def start() -> None:
            await stream.subscribe(topic, cursor, snapshot)
            if summary_key is not None:
                await status_feed(summary_key).join(stream)

        return start


def not_covered(principal: Principal, what: str) -> str:
    org = events.org_topic(principal.organization_id)
    return (
        f"This stream token does not cover the organization's {what}; "
        f"ask for a token with the topic '{org}'."
    )


def _bounded(raw: str | None, *, name: str, default: float, low: float, high: float) -> float:
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HttpError(400, f"{name} must be a number from {low:g} to {high:g}.")
    if not low <= value <= high:
        raise HttpError(400, f"{name} must be from {low:g} to {high:g} (got {raw}).")
    return value


def status_key(params: dict[str, str], principal: Principal) -> tuple[int, float, int]:
    """The shared summary feed that ``poll_interval`` and ``limit`` ask for (400 if outside)."""
    interval = _bounded(
        params.get("poll_interval"), name="poll_interval", default=2, low=0.5, high=30
    )
    # to half seconds: one shared feed per interval a client may mean, not per float it sends
    interval = max(0.5, round(interval * 2) / 2)
    limit = _bounded(params.get("limit"), name="limit", default=5, low=0, high=50)
    if limit != int(limit):
        raise HttpError(400, "limit must be a whole number from 0 to 50.")
    if topics.summary_provider() is None:
        raise HttpError(404, "This server has no status summary.")
    return (principal.organization_id, interval, int(limit))


class StatusSSE(SSEEndpoint):
    """``GET /api/v1/products/import/stream``: import-status summaries, shared per org."""

    async def plan(self, scope, principal, stream):
        if not covers_organization(principal):
            raise HttpError(403, not_covered(principal, "summary"))
        key = status_key(query(scope), principal)

        async def start() -> None:
            await status_feed(key).join(stream)

        async def stop() -> None:
            await status_feed(key).leave(stream)

        stream.on_close = stop
        return start
