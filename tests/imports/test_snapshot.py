"""``job_snapshot`` serves every job event from one serializer per process: what it gives is
what a new ``ImportJobSerializer`` gives, job after job, setting after setting and thread by
thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.utils import timezone

from imports import services
from imports.models import ImportJob, JobStatus
from imports.serializers import ImportJobSerializer, job_snapshot
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db


def _jobs(org) -> list[ImportJob]:
    queued = services.import_job_create(
        organization=org, user=None, upload=upload(csv_bytes(product_rows(3)))
    )
    running = services.import_job_create(
        organization=org, user=None, upload=upload(csv_bytes(product_rows(5)))
    )
    now = timezone.now()
    ImportJob.objects.filter(pk=running.pk).update(
        status=JobStatus.PROCESSING,
        started_at=now - timedelta(seconds=4),
        heartbeat_at=now - timedelta(seconds=600),
        total_rows=5,
        processed_rows=2,
        error_count=30,
        errors=[{"row": n, "message": f"Row {n}: price 'x' is not a number"} for n in range(30)],
        warnings=["w" * 3000, *(f"warning {n}" for n in range(30))],
        error_message="e" * 5000,
        options={"preset": "shopify"},
    )
    return [queued, ImportJob.objects.get(pk=running.pk)]


def test_a_snapshot_is_what_a_new_serializer_gives(org, settings):
    jobs = _jobs(org)
    for job in jobs:
        assert job_snapshot(job) == dict(ImportJobSerializer(job).data)
    running = jobs[1]
    snapshot = job_snapshot(running)
    assert (snapshot["stalled"], snapshot["preset"], snapshot["processed_rows"]) == (
        True,
        "shopify",
        2,
    )
    assert len(snapshot["warnings"]) == 20 and len(snapshot["warnings"][0]) == 2000
    # settings are read at each snapshot, not when the fields were built
    settings.JOB_SNAPSHOT_ERRORS = 3
    settings.JOB_STALLED_AFTER_SECONDS = 3600
    snapshot = job_snapshot(running)
    assert [e["row"] for e in snapshot["errors"]] == [0, 1, 2]
    assert snapshot["stalled"] is False
    assert snapshot == dict(ImportJobSerializer(running).data)


def test_threads_get_their_own_job_s_snapshot(org):
    jobs = _jobs(org) * 50
    with ThreadPoolExecutor(4) as pool:
        snapshots = list(pool.map(job_snapshot, jobs))
    assert [s["id"] for s in snapshots] == [str(j.id) for j in jobs]
    assert [s["status"] for s in snapshots] == [j.status for j in jobs]
