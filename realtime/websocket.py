"""``/ws/v1/stream/``: the WebSocket consumer, a thin shell over ``streams.ClientStream`` with
the same envelopes, cursors and slow-reader handling as the SSE endpoints
(``realtime.consumers``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import daphne_compat, log
from .access import (
    MAX_TOPICS,
    MEMBERSHIP_CHECK_SECONDS,
    AccessDenied,
    StreamSlot,
    authenticate,
    heartbeat_seconds,
    still_member,
    topic_allowed,
)
from .consumers import UNSENT_LIMIT, UNSENT_POLL_SECONDS, nothing_unsent, snapshot
from .metrics import metrics
from .streams import ClientStream, Outgoing, StreamClosed

logger = logging.getLogger(__name__)


class StreamConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/v1/stream/``: subscribe / unsubscribe messages; the same envelopes as SSE."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # daphne cancels every application when it stops: tell the client it is a restart
            # (1012), so it reconnects, rather than letting the socket drop (1006)
            if getattr(self, "slot", None) is not None:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1012})
                await self.disconnect(1012)
            raise
        finally:
            # however the consumer ended (an error included), its stream slot, subscriptions
            # and sender go with it: a slot left behind counts against the user until it expires
            if getattr(self, "slot", None) is not None:
                await self.disconnect(1011)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        """A frame from the client: JSON text, or an error message back (the stream stays)."""
        if self.slot is None:
            return  # refused or closing: nothing is read any more
        if text_data is None:
            await self.send_json(
                {"type": "error", "detail": "Send JSON text frames; binary frames are not read."}
            )
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):  # '[[[[…' thousands deep closed the socket 1011
            await self.send_json(
                {
                    "type": "error",
                    "detail": "That frame is not JSON; send "
                    '{"action": "subscribe", "topics": ["job:<id>"]}.',
                }
            )
            return
        await self.receive_json(content)

    async def connect(self) -> None:
        self.stream = ClientStream(max_queue=settings.REALTIME["QUEUE_SIZE"])
        self.sender: asyncio.Task[None] | None = None
        self.slot: StreamSlot | None = None
        await self.accept()
        try:
            self.principal = await authenticate(self.scope)
        except AccessDenied:
            # 1008 policy violation (realtime.daphne_compat lets daphne send it)
            await self.close(code=1008)
            return
        slot = StreamSlot(self.principal.user_id)
        if not await slot.acquire():
            await self.close(code=4429)
            return
        self.slot = slot
        metrics.inc("streams_opened", "websocket")
        self.unsent = daphne_compat.unsent_bytes(self.base_send) or nothing_unsent
        write_frame = daphne_compat.frame_writer(self.base_send)
        if write_frame is not None:

            def direct(items: Sequence[Outgoing]) -> bool:
                try:
                    frames = (
                        (items[0].ws_frame(),)
                        if len(items) == 1
                        else tuple(i.ws_frame() for i in items)
                    )
                    if not write_frame(*frames):
                        return False  # queued instead: the sender sends it the usual way
                except Exception:
                    return False  # queued instead: the sender's own send reports it
                for item in items:
                    metrics.delivered_one(item)
                return True

            self.stream.direct = direct
        self.sender = asyncio.create_task(self._send_loop())

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.slot is None:
            return
        if not isinstance(content, dict) or content.get("action") not in (
            "subscribe",
            "unsubscribe",
        ):
            await self.send_json(
                {"type": "error", "detail": "Send {'action': 'subscribe'|'unsubscribe', ...}."}
            )
            return
        topics = content.get("topics") or []
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            await self.send_json({"type": "error", "detail": "'topics' must be a list of topics."})
            return
        if content["action"] == "unsubscribe":
            for topic in topics:
                await self.stream.unsubscribe(topic)
            return
        topics = list(dict.fromkeys(topics))
        new = [t for t in topics if t not in self.stream.topics]
        if len(topics) > MAX_TOPICS or len(self.stream.topics) + len(new) > MAX_TOPICS:
            await self.send_json(
                {
                    "type": "error",
                    "detail": f"At most {MAX_TOPICS} topics per subscription and per "
                    f"connection (asked for {len(topics)}, following {len(self.stream.topics)}); "
                    "unsubscribe from some first.",
                }
            )
            return
        if not await still_member(self.principal):
            await self.close(code=1008)  # removed from the organization since connecting
            return
        cursors = content.get("last_event_id")
        for topic in topics:
            if not await topic_allowed(self.principal, topic):
                await self.close(code=4404)
                return
            cursor = cursors.get(topic) if isinstance(cursors, dict) else cursors
            if cursor is not None and not isinstance(cursor, str):
                cursor = str(cursor)  # a bare number is a (partial) id; anything else is not
            if cursor and not log.valid_cursor(cursor):
                await self.send_json(
                    {
                        "type": "error",
                        "detail": f"Bad last_event_id {cursor[:80]!r} for {topic}: "
                        "expected an event id (<ms>-<seq>).",
                    }
                )
                continue
            await self.stream.subscribe(topic, cursor, snapshot, initial=not cursor)

    async def _send_loop(self) -> None:
        beat = heartbeat_seconds()
        clock = asyncio.get_running_loop().time
        next_beat = clock() + beat
        next_check = clock() + MEMBERSHIP_CHECK_SECONDS
        try:
            while True:
                if self.unsent() > UNSENT_LIMIT:  # a slow reader: see SSE's pump
                    self.stream.backed_up = True
                    while self.unsent() > UNSENT_LIMIT and not self.stream.overflowed:
                        await asyncio.sleep(UNSENT_POLL_SECONDS)
                    self.stream.backed_up = False
                item: Outgoing | None = await self.stream.next_until(next_beat)
                if item is None:
                    if clock() >= next_beat:
                        await self.send(
                            text_data=json.dumps(
                                {"type": "heartbeat", "timestamp": int(time.time() * 1000)}
                            )
                        )
                        assert self.slot is not None
                        await self.slot.refresh()
                        next_beat = clock() + beat
                        if clock() >= next_check:
                            if not await still_member(self.principal):
                                await self.close(code=1008)
                                return
                            next_check = clock() + MEMBERSHIP_CHECK_SECONDS
                    continue
                await self.send(text_data=item.data)
                metrics.delivered_one(item)
        except StreamClosed:
            metrics.inc("resets", "too_slow")
            await self.send(text_data=json.dumps({"type": "reset", "reason": "too_slow"}))
            await self.close(code=4408)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("WebSocket sender failed")
            await self.close(code=1011)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "sender", None) is not None:
            self.sender.cancel()
        if getattr(self, "stream", None) is not None:
            await self.stream.close()
        if getattr(self, "slot", None) is not None:
            await self.slot.release()
            metrics.inc("streams_closed", "websocket")
            self.slot = None
