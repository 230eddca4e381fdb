"""Drills: work horses and whole workers killed in the middle of an import."""

from __future__ import annotations

import os
import random
import signal
import time

import psutil
import pytest

from imports.models import ImportJob, JobStatus
from realtime.events import job_topic
from realtime.log import read_after

from .conftest import assert_table_exact, make_import, processed, random_points, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 60_000
BATCH = 250
KILLS = 3


def test_a_work_horse_killed_at_random_batches_resumes_by_itself_and_the_table_is_exact(
    org, workers
):
    rng = random.Random()
    job = make_import(org, ROWS, BATCH)
    worker = workers("horse-drill")
    points = random_points(KILLS, ROWS, rng)
    orphans = []
    for n, point in enumerate(points, start=1):
        wait_for(
            lambda point=point: processed(job.pk) >= point,
            timeout=90,
            failure=f"kill {n}: the job never got past row {point} "
            f"(processed {processed(job.pk)}); worker log:\n{worker.log_tail()}",
        )
        horse = wait_for(worker.horse, timeout=10, failure=f"kill {n}: no work horse to kill")
        validators = horse.children(recursive=True)
        os.kill(horse.pid, signal.SIGKILL)
        orphans += validators
        wait_for(
            lambda n=n: ImportJob.objects.filter(pk=job.pk, attempt__gte=n + 1).exists(),
            timeout=30,
            failure=f"kill {n}: the job was not resumed as attempt {n + 1} after its horse died;"
            f" worker log:\n{worker.log_tail()}",
        )
    wait_for(
        lambda: ImportJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        timeout=120,
        failure=f"the job did not complete after {KILLS} killed horses: "
        f"{ImportJob.objects.get(pk=job.pk).status}, {processed(job.pk)} rows; "
        f"worker log:\n{worker.log_tail()}",
    )
    job.refresh_from_db()
    assert_table_exact(org, ROWS)
    assert job.attempt == KILLS + 1, f"expected {KILLS + 1} attempts, the job says {job.attempt}"
    counts = (job.processed_rows, job.created_rows, job.error_count)
    assert counts == (ROWS, ROWS, 0), (
        f"the job's counts lost or doubled rows across attempts: processed, created, errors = "
        f"{counts}; errors: {job.errors[:3]}"
    )
    resumed = [e for e in read_after(job_topic(job.pk), None).events if e["type"] == "job.resumed"]
    assert [e["attempt"] for e in resumed] == list(range(2, KILLS + 2)), (
        "a resume was not announced"
    )
    alive = [p.pid for p in orphans if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"validator processes of killed horses are still running: {alive}"


def test_a_whole_worker_killed_is_resumed_by_another_within_90_seconds(org, workers):
    job = make_import(org, ROWS, BATCH)
    first = workers("killed-worker")
    wait_for(
        lambda: processed(job.pk) >= ROWS // 5,
        timeout=90,
        failure=f"the job never got going; worker log:\n{first.log_tail()}",
    )
    first.kill_everything()
    killed_at = time.monotonic()
    done_before = processed(job.pk)
    second = workers("second-worker")
    wait_for(
        lambda: ImportJob.objects.filter(pk=job.pk, attempt=2).exists(),
        timeout=90,
        failure=f"a job whose worker was killed was not resumed by the new worker; "
        f"job is {ImportJob.objects.get(pk=job.pk).status}; worker log:\n{second.log_tail()}",
    )
    resumed_after = time.monotonic() - killed_at
    assert resumed_after < 90, f"resumed only after {resumed_after:.0f} s"
    wait_for(
        lambda: ImportJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED,
        timeout=120,
        failure=f"the resumed job did not complete; worker log:\n{second.log_tail()}",
    )
    job.refresh_from_db()
    assert_table_exact(org, ROWS)
    assert (job.processed_rows, job.created_rows) == (ROWS, ROWS), (
        f"counts after the resume: {job.processed_rows} processed, {job.created_rows} created "
        f"(the killed attempt had {done_before})"
    )
    assert any(w.startswith("Attempt 2 goes on after row") for w in job.warnings), (
        f"attempt 2 started over instead of after the checkpoint: {job.warnings}"
    )
