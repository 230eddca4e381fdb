"""One long-lived sync Redis client per process (publishing from workers, reading the log)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def client() -> redis.Redis:
    # socket_timeout above any blocking call we make; health checks recycle dead sockets
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=30, health_check_interval=30, max_connections=200
    )
