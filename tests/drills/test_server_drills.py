"""Drills: Redis and PostgreSQL restarted in the middle of an import."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from rest_framework.authtoken.models import Token

from imports.models import ImportJob, JobStatus
from tests.fixtures.files import csv_bytes, product_rows
from tests.fixtures.services import Daphne

from .conftest import JobFollower, assert_table_exact, processed, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 60_000
BATCH = 250


def _upload_through(server: Daphne, user, rows: int) -> str:
    token, _ = Token.objects.get_or_create(user=user)
    resp = httpx.post(
        f"{server.url}/api/v1/products/import",
        headers={"Authorization": f"Token {token.key}"},
        files={"file": ("products.csv", csv_bytes(product_rows(rows)), "text/csv")},
        data={"batch_size": str(BATCH)},
        timeout=60,
    )
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def test_redis_restarted_during_an_import_it_completes_and_a_follower_sees_the_end(
    org, operator, drill_env, drill_redis, workers
):
    env = {**drill_env, "REDIS_URL": drill_redis.url}
    server = Daphne(env)
    server.start()
    try:
        job_id = _upload_through(server, operator, ROWS)
        worker = workers("redis-drill", env)
        token, _ = Token.objects.get_or_create(user=operator)
        follower = JobFollower(server.url, job_id, {"Authorization": f"Token {token.key}"})
        reader = threading.Thread(target=follower.run, args=(150,), daemon=True)
        reader.start()
        wait_for(
            lambda: processed(job_id) >= ROWS // 5,
            timeout=90,
            failure=f"the job never got going; worker log:\n{worker.log_tail()}",
        )
        drill_redis.crash()  # its queues, event log and locks are gone with it
        time.sleep(1.0)
        drill_redis.start()
        wait_for(
            lambda: ImportJob.objects.get(pk=job_id).status == JobStatus.COMPLETED,
            timeout=120,
            failure=f"the import did not complete after Redis restarted: "
            f"{ImportJob.objects.get(pk=job_id).status}, {processed(job_id)} rows; "
            f"worker log:\n{worker.log_tail()}",
        )
        reader.join(60)
    finally:
        server.stop()
    assert_table_exact(org, ROWS)
    final = follower.final
    assert final is not None, (
        f"the SSE client following the job never saw it end ({follower.connections} "
        f"connections; {follower.log[-5:]})"
    )
    assert (final["status"], final["processed_rows"], final["created_rows"]) == (
        "completed",
        ROWS,
        ROWS,
    ), f"the client's final state is not the job's: {final['status']}, {final['processed_rows']}"
    assert worker.proc.poll() is None, "the worker quit when Redis went away"
