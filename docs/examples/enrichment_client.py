"""An integration that uploads a BOM, starts its enrichment and follows it live over SSE.

    INTAKE_TOKEN=... python docs/examples/enrichment_client.py http://127.0.0.1:8000 board.csv

The API token goes in the Authorization header of the API calls. The stream is opened the way a
client that cannot set headers (a browser EventSource, a proxy, a log shipper) would: with a
short-lived stream token for ``bom:<id>`` in the URL (``?token=``), never the API token. After a
dropped connection the client resumes with ``Last-Event-ID``; an expired stream token is
replaced by a new one; a 204 answer means the run had already ended.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
from httpx_sse import connect_sse

TERMINAL = ("enrichment.completed", "enrichment.failed")


def stream_token(api: httpx.Client, bom_id: int) -> str:
    resp = api.post("/api/v1/realtime/tokens", json={"topics": [f"bom:{bom_id}"]})
    resp.raise_for_status()
    return resp.json()["token"]


def follow(api: httpx.Client, bom_id: int) -> dict | None:
    """Print the run's progress until it ends; returns the completed event's summary."""
    last_id = None
    backoff = 3.0
    token = stream_token(api, bom_id)
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with (
                httpx.Client(base_url=api.base_url, timeout=httpx.Timeout(10, read=60)) as http,
                connect_sse(
                    http,
                    "GET",
                    f"/api/v1/enrichment/stream/{bom_id}",
                    params={"token": token},
                    headers=headers,
                ) as source,
            ):
                status = source.response.status_code
                if status == 204:
                    print("the run had already ended")
                    return None
                if status == 401:  # the stream token expired: ask for a new one
                    token = stream_token(api, bom_id)
                    continue
                source.response.raise_for_status()
                backoff = 3.0
                for sse in source.iter_sse():
                    if not sse.data or sse.event == "heartbeat":
                        continue
                    last_id = sse.id or last_id
                    body = json.loads(sse.data)
                    state = body.get("state") or {}
                    print(
                        f"{sse.event:22s} {state.get('percent_complete', 0):3d}% "
                        f"{state.get('enriched_items', 0)}/{state.get('total_items', 0)} "
                        f"matched {state.get('matched', 0)} ambiguous {state.get('ambiguous', 0)} "
                        f"not found {state.get('not_found', 0)}"
                    )
                    if sse.event in TERMINAL:
                        return body.get("summary")
        except (httpx.TransportError, httpx.StreamError) as exc:
            print(f"connection lost ({exc!r}); retrying in {backoff:.0f} s")
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def main(base_url: str, path: str, token: str) -> None:
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=60
    ) as api:
        with open(path, "rb") as fh:
            resp = api.post("/api/v1/boms", files={"file": (os.path.basename(path), fh)})
        resp.raise_for_status()
        bom = resp.json()
        print(f"BOM {bom['id']}: {bom['line_count']} lines; row problems: {bom['row_errors']}")
        resp = api.post(f"/api/v1/boms/{bom['id']}/enrichment/start", json={"priority": 8})
        if resp.status_code == 409:
            print(f"a run is already going: job {resp.json()['job_id']}")
        else:
            resp.raise_for_status()
        summary = follow(api, bom["id"])
        if summary:
            cost = f"{summary['total_cost']} {summary['currency']}"
            print(f"total cost {cost}, counts {summary['counts']}")
        lines = api.get(f"/api/v1/boms/{bom['id']}/lines", params={"match_status": "ambiguous"})
        for line in lines.json()["results"]:
            options = ", ".join(
                f"{c['component']['mpn']} ({c['score']})" for c in line["candidates"]
            )
            print(f"line {line['line_number']} {line['mpn']}: pick one of {options}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], os.environ["INTAKE_TOKEN"])
