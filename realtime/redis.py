"""One long-lived sync Redis client per process (publishing from workers, reading the log), and
one asyncio client per event loop for what the streams do on their own loop."""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio
from django.conf import settings


@functools.cache
def client() -> redis.Redis:
    # socket_timeout above any blocking call we make; health checks recycle dead sockets
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=30, health_check_interval=30, max_connections=200
    )


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> redis.asyncio.Redis:
    """The running loop's client: stream bookkeeping without a thread hop per call.

    ``sync_to_async`` runs thread-sensitive calls one at a time in one thread, so a thousand
    streams closing together (a job's terminal event) queued a thousand Redis round trips
    behind each other, and that thread's GIL time slowed the loop's own writes. A blocking pool
    bounds the connections when many streams open or close at once.
    """
    loop = asyncio.get_running_loop()
    found = _async_clients.get(loop)
    if found is None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=20, timeout=30, socket_timeout=30
        )
        found = _async_clients[loop] = redis.asyncio.Redis(connection_pool=pool)
    return found
