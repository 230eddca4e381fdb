"""Follow a job's SSE stream from Python with httpx-sse, resuming after any disconnect.

Shared by ``manage.py watch_job`` and ``docs/examples/sse_client.py``: a reconnect sends the last
event id it saw, so no event is lost or repeated; a 204 means the job has ended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

TERMINAL = {"job.completed", "job.failed", "job.cancelled"}


def follow_job(
    base_url: str,
    job_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    max_backoff: float = 30.0,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(event type, envelope)`` until the job ends; reconnects with backoff."""
    url = f"{base_url.rstrip('/')}/api/v1/jobs/{job_id}/events"
    last_id: str | None = None
    backoff = 3.0
    while True:
        request_headers = dict(headers or {})
        if last_id:
            request_headers["Last-Event-ID"] = last_id
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as http,
                connect_sse(http, "GET", url, headers=request_headers, params=params) as source,
            ):
                status = source.response.status_code
                if status == 204:
                    return  # we already have the terminal event
                if status != 200:
                    detail = source.response.read().decode(errors="replace")
                    raise RuntimeError(f"stream refused ({status}): {detail}")
                backoff = 3.0
                for sse in source.iter_sse():
                    if not sse.data or sse.event == "heartbeat":
                        continue
                    if sse.id:
                        last_id = sse.id
                    envelope = json.loads(sse.data)
                    yield sse.event, envelope
                    if sse.event in TERMINAL or (
                        sse.event in ("snapshot", "reset")
                        and envelope.get("job", {}).get("status")
                        in ("completed", "failed", "cancelled")
                    ):
                        return
        except (httpx.TransportError, httpx.StreamError):
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
