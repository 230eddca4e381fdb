"""Drill: daphne restarted with 500 SSE clients attached to a running import."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import httpx
import pytest
from httpx_sse import aconnect_sse
from rest_framework.authtoken.models import Token

from imports.models import ImportJob, JobStatus
from tests.fixtures.services import Daphne

from .conftest import make_import, processed, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 500
ROWS = 60_000
BATCH = 250
TERMINAL = ("completed", "failed", "cancelled")


class Crowd:
    """``CLIENTS`` SSE clients on one event loop, each following the job like
    docs/examples/sse_client.py: reconnect with Last-Event-ID after a short, jittered wait
    whenever the stream breaks, until the job's end is seen."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self.url, self.headers, self.timeout = url, headers, timeout
        self.final: list[dict | None] = [None] * CLIENTS
        self.connected = [0] * CLIENTS  # streams that answered 200
        self.errors: list[str] = []
        self.thread = threading.Thread(target=lambda: asyncio.run(self._all()), daemon=True)

    async def _all(self) -> None:
        limits = httpx.Limits(max_connections=CLIENTS + 50, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=limits) as http:
            await asyncio.gather(*(self._one(http, i) for i in range(CLIENTS)))

    async def _one(self, http: httpx.AsyncClient, i: int) -> None:
        deadline = time.monotonic() + self.timeout
        last_id = None
        while self.final[i] is None and time.monotonic() < deadline:
            headers = dict(self.headers)
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                async with aconnect_sse(http, "GET", self.url, headers=headers) as source:
                    if source.response.status_code == 200:
                        self.connected[i] += 1
                        async for sse in source.aiter_sse():
                            if sse.id:
                                last_id = sse.id
                            if sse.event == "heartbeat" or not sse.data:
                                continue
                            job = json.loads(sse.data).get("job") or {}
                            if job.get("status") in TERMINAL:
                                self.final[i] = job
                                return
                    else:
                        self.errors.append(f"HTTP {source.response.status_code}")
            except httpx.HTTPError as exc:
                if len(self.errors) < 50:
                    self.errors.append(type(exc).__name__)
            await asyncio.sleep(0.5 + random.random())


def test_daphne_restarted_with_500_clients_attached_every_client_sees_the_end(
    org, operator, drill_env, workers
):
    env = {**drill_env, "REALTIME_MAX_STREAMS_PER_USER": str(CLIENTS + 100)}
    server = Daphne(env)
    server.start()
    token, _ = Token.objects.get_or_create(user=operator)
    job = make_import(org, ROWS, BATCH)
    crowd = Crowd(
        f"{server.url}/api/v1/jobs/{job.pk}/events",
        {"Authorization": f"Token {token.key}"},
        timeout=150,
    )
    try:
        crowd.thread.start()
        wait_for(
            lambda: sum(1 for c in crowd.connected if c) == CLIENTS,
            timeout=60,
            failure=f"only {sum(1 for c in crowd.connected if c)} of {CLIENTS} clients "
            f"connected: {crowd.errors[:5]}",
        )
        worker = workers("daphne-drill")
        wait_for(
            lambda: processed(job.pk) >= ROWS // 5,
            timeout=90,
            failure=f"the job never got going; worker log:\n{worker.log_tail()}",
        )
        server.stop()  # every stream is cut
        server.start()  # same port: the clients come back with Last-Event-ID
        wait_for(
            lambda: ImportJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
            timeout=120,
            failure=f"the import did not complete; worker log:\n{worker.log_tail()}",
        )
        crowd.thread.join(90)
    finally:
        server.stop()
    job.refresh_from_db()
    missing = [i for i, f in enumerate(crowd.final) if f is None]
    assert not missing, (
        f"{len(missing)} of {CLIENTS} clients never saw the job end after daphne restarted "
        f"(e.g. client {missing[0]}, {crowd.connected[missing[0]]} connections); "
        f"errors: {crowd.errors[:5]}"
    )
    wrong = [
        (i, f["status"], f["processed_rows"])
        for i, f in enumerate(crowd.final)
        if (f["status"], f["processed_rows"]) != (job.status, job.processed_rows)
    ]
    assert not wrong, f"{len(wrong)} clients ended in a state that is not the job's: {wrong[:5]}"
    reconnected = sum(1 for c in crowd.connected if c >= 2)
    assert reconnected >= CLIENTS * 0.9, (
        f"only {reconnected} clients reconnected: the restart did not happen mid-stream"
    )
