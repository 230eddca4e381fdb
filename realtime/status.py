"""Status summaries for the summary stream, computed once per organization, interval and limit
(per process) and shared by all their listeners, not one query per client per tick.

What a summary holds is the business of the app that registered it
(``realtime.topics.register_summary``; ``imports`` registers the import-status summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from channels.db import database_sync_to_async

from . import events, topics
from .hub import get_hub
from .streams import ClientStream, Outgoing

Key = tuple[int, float, int]  # organization id, poll interval, limit


class StatusFeed:
    def __init__(self, key: Key) -> None:
        self.key = key
        self.listeners: set[ClientStream] = set()
        self.latest: Outgoing | None = None
        self.dirty = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.computations = 0  # for tests and metrics: how often the database was asked

    def _on_event(self, messages: list[dict[str, Any]]) -> None:
        self.dirty.set()

    async def join(self, stream: ClientStream) -> None:
        self.listeners.add(stream)
        if self.task is None or self.task.done():
            await get_hub().subscribe(events.org_topic(self.key[0]), self._on_event)
            self.dirty.set()
            self.task = asyncio.create_task(self._run(), name=f"status-feed-{self.key}")
        elif self.latest is not None:
            stream.enqueue(self.latest)  # a newcomer gets the current summary at once

    async def leave(self, stream: ClientStream) -> None:
        self.listeners.discard(stream)
        if not self.listeners and self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
            await get_hub().unsubscribe(events.org_topic(self.key[0]), self._on_event)
            _feeds.pop(self.key, None)

    async def _run(self) -> None:
        org_id, interval, limit = self.key
        summarize = topics.summary_provider()
        assert summarize is not None  # checked before a stream joins (consumers.status_key)
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            summary = await database_sync_to_async(summarize)(org_id, limit)
            self.computations += 1
            if summary is None:
                continue  # the organization is gone: nothing to say
            self.latest = Outgoing(
                topic=events.org_topic(org_id), type="status", id=None, data=json.dumps(summary)
            )
            for stream in list(self.listeners):
                stream.enqueue(self.latest)
            await asyncio.sleep(interval)  # at most one summary per interval


_feeds: dict[Key, StatusFeed] = {}


def status_feed(key: Key) -> StatusFeed:
    feed = _feeds.get(key)
    if feed is None:
        feed = _feeds[key] = StatusFeed(key)
    return feed
