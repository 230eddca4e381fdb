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
    org, other_org, operator, outsider, drill_env, drill_redis, workers
):
    """Redis restarts empty: the running import goes on, and an import that was waiting in
    the queue (lost with it) is queued again by the worker's check and imported too."""
    env = {**drill_env, "REDIS_URL": drill_redis.url}
    server = Daphne(env)
    server.start()
    try:
        job_id = _upload_through(server, operator, ROWS)
        waiting_id = _upload_through(server, outsider, 2_000)  # another tenant's, queued
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
        at_crash = processed(job_id)
        time.sleep(1.0)
        drill_redis.start()
        wait_for(
            lambda: ImportJob.objects.get(pk=job_id).status == JobStatus.COMPLETED,
            timeout=120,
            failure=f"the import did not complete after Redis restarted: "
            f"{ImportJob.objects.get(pk=job_id).status}, {processed(job_id)} rows; "
            f"worker log:\n{worker.log_tail()}",
        )
        wait_for(
            lambda: ImportJob.objects.get(pk=waiting_id).status == JobStatus.COMPLETED,
            timeout=60,
            failure=f"an import queued when Redis restarted was lost with its queue: "
            f"{ImportJob.objects.get(pk=waiting_id).status}; worker log:\n{worker.log_tail()}",
        )
        reader.join(60)
    finally:
        server.stop()
    assert_table_exact(org, ROWS)
    assert_table_exact(other_org, 2_000)
    assert at_crash < ROWS, "the import had ended before Redis went away: nothing was drilled"
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


CREATE_JOB = """
from imports import services
from imports.models import Organization
from tests.fixtures.files import csv_bytes, product_rows, upload
org = Organization.objects.create(name="Drill", slug="drill")
job = services.import_job_create(
    organization=org, user=None, upload=upload(csv_bytes(product_rows({rows}))),
    batch_size={batch},
)
print("JOB", job.id, org.id)
"""


def test_postgres_restarted_during_an_import_it_completes_and_the_table_is_exact(
    drill_env, drill_redis, workers
):
    import subprocess
    import sys

    import psycopg

    from .conftest import ROOT, DrillPostgres

    pg = DrillPostgres()
    pg.start()
    try:
        env = {**drill_env, "DATABASE_URL": pg.url, "REDIS_URL": drill_redis.url}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        made = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", CREATE_JOB.format(rows=ROWS, batch=BATCH)],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        job_id, org_id = made.stdout.split("JOB", 1)[1].split()[:2]
        db = psycopg.connect(pg.url, autocommit=True)

        def job_row() -> dict:
            try:
                cur = db.execute(
                    "SELECT status, processed_rows, created_rows, error_count, attempt, "
                    "error_message FROM imports_importjob WHERE id = %s",
                    [job_id],
                )
                names = [c.name for c in cur.description]
                return dict(zip(names, cur.fetchone(), strict=True))
            except psycopg.OperationalError:
                return {"status": "?", "processed_rows": 0}

        worker = workers("postgres-drill", env)
        wait_for(
            lambda: job_row()["processed_rows"] >= ROWS // 5,
            timeout=90,
            failure=f"the job never got going; worker log:\n{worker.log_tail()}",
        )
        pg.restart()  # every connection is cut; temp tables and session settings are gone
        db = psycopg.connect(pg.url, autocommit=True)
        wait_for(
            lambda: job_row()["status"] in ("completed", "failed"),
            timeout=150,
            failure=f"the import did not end after PostgreSQL restarted: {job_row()}; "
            f"worker log:\n{worker.log_tail()}",
        )
        row = job_row()
        assert row["status"] == "completed", f"the import failed: {row['error_message']}"
        count, distinct, wrong = db.execute(
            "SELECT count(*), count(DISTINCT sku), "
            "count(*) FILTER (WHERE name !~ '^Product [0-9]+$') "
            "FROM imports_product WHERE organization_id = %s",
            [int(org_id)],
        ).fetchone()
        assert count == distinct, f"{count - distinct} products were imported twice"
        assert distinct == ROWS, f"{ROWS - distinct} of {ROWS} products were lost"
        assert wrong == 0, f"{wrong} products hold values that are not their row's"
        assert (row["processed_rows"], row["created_rows"], row["error_count"]) == (
            ROWS,
            ROWS,
            0,
        ), f"the database outage was counted as row errors or rows were lost: {row}"
        db.close()
    finally:
        pg.stop()


def test_a_worker_outlives_a_redis_outage_that_spans_the_end_of_its_job(
    org, other_org, operator, outsider, drill_env, drill_redis, workers
):
    """Redis is away for seconds while an import ends: RQ's own worker would quit as it asks
    Redis about the ended job or about suspension. Ours goes on, and a job queued after Redis
    is back is run by it."""
    env = {**drill_env, "REDIS_URL": drill_redis.url}
    server = Daphne(env)
    server.start()
    try:
        job_id = _upload_through(server, operator, 3_000)
        worker = workers("redis-outage-drill", env)
        wait_for(
            lambda: ImportJob.objects.get(pk=job_id).status != JobStatus.QUEUED,
            timeout=60,
            failure=f"the job never started; worker log:\n{worker.log_tail()}",
        )
        drill_redis.crash()
        wait_for(
            lambda: ImportJob.objects.get(pk=job_id).status == JobStatus.COMPLETED,
            timeout=60,
            failure="the import did not complete while Redis was away (publishing failed it?)",
        )
        time.sleep(3)  # the worker comes round its loop with Redis still away
        drill_redis.start()
        assert worker.proc.poll() is None, (
            f"the worker quit during the Redis outage; its log:\n{worker.log_tail()}"
        )
        later_id = _upload_through(server, outsider, 500)
        wait_for(
            lambda: ImportJob.objects.get(pk=later_id).status == JobStatus.COMPLETED,
            timeout=60,
            failure=f"a job queued after Redis came back was not run; worker log:\n"
            f"{worker.log_tail()}",
        )
    finally:
        server.stop()
    assert_table_exact(org, 3_000)
    assert_table_exact(other_org, 500)
