"""An integration following an Intake job over SSE with httpx-sse, resuming on reconnect.

    INTAKE_TOKEN=... python docs/examples/sse_client.py http://127.0.0.1:8000 <job-id>

The API token goes in the Authorization header (never in a URL). After a dropped connection the
client reconnects with the last event id it saw (Last-Event-ID), so it gets every event exactly
once; a 204 answer means the job had already ended.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
from httpx_sse import connect_sse


def follow(base_url: str, job_id: str, token: str) -> None:
    url = f"{base_url.rstrip('/')}/api/v1/jobs/{job_id}/events"
    last_id = None
    backoff = 3.0
    while True:
        headers = {"Authorization": f"Token {token}"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as http,
                connect_sse(http, "GET", url, headers=headers) as source,
            ):
                if source.response.status_code == 204:
                    print("the job had already ended")
                    return
                source.response.raise_for_status()
                backoff = 3.0
                for sse in source.iter_sse():
                    if not sse.data or sse.event == "heartbeat":
                        continue
                    last_id = sse.id or last_id
                    job = json.loads(sse.data).get("job", {})
                    print(
                        f"{sse.event:14s} {job.get('status')} {job.get('progress')}% "
                        f"{job.get('processed_rows')}/{job.get('total_rows')}"
                    )
                    if sse.event in ("job.completed", "job.failed", "job.cancelled"):
                        return
                    if sse.event in ("snapshot", "reset") and job.get("status") in (
                        "completed",
                        "failed",
                        "cancelled",
                    ):
                        return
        except (httpx.TransportError, httpx.StreamError) as exc:
            print(f"connection lost ({exc!r}); retrying in {backoff:.0f} s")
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


if __name__ == "__main__":
    follow(sys.argv[1], sys.argv[2], os.environ["INTAKE_TOKEN"])
