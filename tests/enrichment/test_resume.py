"""A run whose attempt stopped on a database outage is resumed after the lines it stored in
order: progress never goes down, and the lines already stored are not matched again."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from enrichment import jobs as enrichment_jobs
from enrichment import services
from enrichment.models import Bom, BomLine
from imports.jobs import run_job
from imports.models import ImportJob, JobStatus
from realtime.events import bom_topic
from realtime.log import read_after

pytestmark = pytest.mark.django_db(transaction=True)

WRITTEN = [("lm358d", "TI"), ("1.5SMC-68CA", ""), ("BAS16J,115", "Nexperia"), ("NOPE-1", "")]


class Outage:
    """Records the lines (by number) each call of ``run_chunks`` got; the database goes away
    after the first chunk of call ``on_call`` (1 = the first)."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.on_call = 1
        self.always = False


@pytest.fixture
def outage(monkeypatch):
    real = enrichment_jobs.run_chunks
    state = Outage()

    def run_chunks(matcher, lines, **kwargs):
        state.calls.append([line.line_number for line in lines])
        chunks = real(matcher, lines, **kwargs)
        try:
            yield next(chunks)
            if state.always or len(state.calls) == state.on_call:
                raise OperationalError("server closed the connection unexpectedly")
            yield from chunks
        finally:
            chunks.close()

    monkeypatch.setattr(enrichment_jobs, "run_chunks", run_chunks)
    return state


def _bom(org) -> Bom:
    bom = Bom.objects.create(organization=org, name="resumed")
    BomLine.objects.bulk_create(
        BomLine(bom=bom, line_number=n + 2, mpn=mpn, manufacturer=maker, quantity=1)
        for n, (mpn, maker) in enumerate(WRITTEN * 3)  # lines 2..13
    )
    return bom


def _resumed_run(bom, only=None) -> ImportJob:
    """A run whose first attempt meets the outage, then its second attempt."""
    job = services.enrichment_start(bom=bom, user=None, priority=5, only=only)
    run_job(str(job.id))
    job.refresh_from_db()
    # the outage is not the run's fault: the job waits for its next attempt, not failed
    assert (job.status, job.attempt, job.processed_rows) == (JobStatus.QUEUED, 2, 4)
    run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error_message
    return job


def _check_events(bom, job, *, first_started: int) -> None:
    events = [
        e
        for e in read_after(bom_topic(bom.id), None).events
        if e.get("job", {}).get("id") == str(job.id)
    ]
    percents = [e["state"]["percent_complete"] for e in events if "state" in e]
    assert percents == sorted(percents) and percents[-1] == 100
    started = [e for e in events if e["type"] == "enrichment.started"]
    assert [e["state"]["enriched_items"] for e in started] == [0, first_started]
    completed = events[-1]
    assert completed["type"] == "enrichment.completed"
    counted = {k: v for k, v in ImportJob.objects.get(pk=job.pk).options["counts"].items()}
    assert sum(counted.values()) == job.processed_rows == completed["state"]["enriched_items"]
    assert {k: completed["state"][k] for k in counted} == counted


@pytest.fixture
def fast_progress(settings):
    settings.ENRICHMENT_CHUNK_LINES = 4
    settings.PROGRESS_MIN_INTERVAL = 0  # every chunk's progress goes out


def test_a_run_resumed_after_an_outage_goes_on_after_its_checkpoint(
    org, catalogue, fast_progress, outage
):
    bom = _bom(org)
    job = _resumed_run(bom)
    assert job.checkpoint_row == 13
    assert outage.calls == [list(range(2, 14)), list(range(6, 14))]  # lines 2-5 not again
    assert job.processed_rows == 12
    assert not bom.lines.filter(enriched_at=None).exists()
    bom.refresh_from_db()  # the run's own thread's waits on its helpers, beside the tiers
    assert set(bom.summary["run"]["waited_seconds"]) == {"storing", "closing"}
    _check_events(bom, job, first_started=4)
    assert ImportJob.objects.get(pk=job.pk).options["counts"] == {
        "matched": 6,
        "ambiguous": 3,
        "not_found": 3,
    }


def test_a_resumed_rerun_of_the_unresolved_lines_goes_on_after_its_checkpoint(
    org, catalogue, fast_progress, outage
):
    bom = _bom(org)
    outage.on_call = 2  # the full run goes through; the re-run of the unresolved lines does not
    first = services.enrichment_start(bom=bom, user=None, priority=5)
    run_job(str(first.id))
    job = _resumed_run(bom, only="unresolved")
    unresolved = [3, 5, 7, 9, 11, 13]  # 1.5SMC-68CA ambiguous, NOPE-1 not found
    assert outage.calls[1:] == [unresolved, unresolved[4:]]
    assert (job.processed_rows, job.total_rows) == (6, 6)
    _check_events(bom, job, first_started=4)


def test_a_run_whose_last_attempt_meets_an_outage_ends_its_bom_stream(
    org, catalogue, fast_progress, outage, settings
):
    settings.JOB_MAX_ATTEMPTS = 2
    outage.always = True
    bom = _bom(org)
    job = services.enrichment_start(bom=bom, user=None, priority=5)
    run_job(str(job.id))
    run_job(str(job.id))
    job.refresh_from_db()
    assert (job.status, job.attempt, job.processed_rows) == (JobStatus.FAILED, 2, 8)
    last = read_after(bom_topic(bom.id), None).events[-1]
    # the BOM's stream and page wait for an enrichment.* end, not the job's own job.failed
    assert last["type"] == "enrichment.failed" and last["job"]["status"] == "failed"
    assert last["state"]["enriched_items"] == 8 and last["state"]["total_items"] == 12
    assert "database connection was lost" in last["error"]


def test_a_run_cancelled_while_queued_ends_its_bom_stream(org, catalogue):
    from imports.services import import_job_cancel

    bom = _bom(org)
    job = services.enrichment_start(bom=bom, user=None, priority=5)
    import_job_cancel(job=job)
    last = read_after(bom_topic(bom.id), None).events[-1]
    assert (last["type"], last["reason"], last["job"]["status"]) == (
        "enrichment.failed",
        "cancelled",
        "cancelled",
    )
