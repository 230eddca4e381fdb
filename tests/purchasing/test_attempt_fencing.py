"""A purchase-order attempt presumed lost but still alive writes nothing once a newer attempt
owns the job; a resumed attempt whose stages had all finished leaves the order completed."""

from __future__ import annotations

import pytest

from imports.jobs import run_job
from imports.models import ImportJob
from imports.progress import JobFenced
from imports.purchasing import stages
from imports.purchasing.models import PurchaseOrder, WorkflowStage
from imports.purchasing.workflow import StageError, StageResult
from imports.recovery import job_lost
from tests.purchasing.documents import po_csv
from tests.purchasing.test_workflow import post_order, stage_statuses

pytestmark = pytest.mark.django_db(transaction=True)


def resume_elsewhere(job_id: str) -> None:
    """What the lost-worker check does to a job whose heartbeat went stale."""
    assert job_lost(job_id=job_id, why="no heartbeat (test)") == "resumed"


@pytest.mark.parametrize("ending", ["returns", "fails"])
def test_a_superseded_attempt_neither_finishes_nor_fails_its_stage(api, org, monkeypatch, ending):
    def image_attachment(ctx):
        resume_elsewhere(ctx.job.pk)
        if ending == "fails":
            raise StageError("the old attempt's failure")
        return StageResult(message="the old attempt's result")

    monkeypatch.setitem(stages.STAGE_FUNCTIONS, "image_attachment", image_attachment)
    body = post_order(api, po_csv(2)).json()
    order_id, job_id = body["purchase_order"]["id"], body["job"]["id"]
    run_job(job_id)

    # the old attempt stopped where it noticed: no stage after it ran, the order is not failed
    statuses = stage_statuses(order_id)
    assert statuses["image_attachment"] == "running"
    assert statuses["sync"] == statuses["status_update"] == "pending"
    assert PurchaseOrder.objects.get(pk=order_id).status == "processing"
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.attempt, job.error_message) == ("queued", 2, "")

    monkeypatch.undo()
    run_job(job_id)  # the newer attempt goes on from the stage the old one never finished
    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"
    stage = WorkflowStage.objects.get(order_id=order_id, name="image_attachment")
    assert (stage.status, stage.attempt) == ("skipped", 2)


def test_progress_of_a_superseded_attempt_stops_it(api, org, monkeypatch):
    raised: list[type[BaseException]] = []

    def product_drafts(ctx):
        resume_elsewhere(ctx.job.pk)
        try:
            ctx.progress(1, 2)
        except BaseException as exc:
            raised.append(type(exc))
            raise
        return StageResult()

    # a stage outside a transaction: a database stage holds the job's row, and the resume
    # (another process in real life) would wait for it here, in the same thread
    monkeypatch.setitem(stages.STAGE_FUNCTIONS, "sync", product_drafts)
    body = post_order(api, po_csv(2)).json()
    run_job(body["job"]["id"])
    assert raised == [JobFenced]
    assert stage_statuses(body["purchase_order"]["id"])["status_update"] == "pending"


def test_a_resumed_attempt_after_the_last_stage_leaves_the_order_completed(api, org):
    body = post_order(api, po_csv(2)).json()
    order_id, job_id = body["purchase_order"]["id"], body["job"]["id"]
    run_job(job_id)
    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"
    # the worker was lost after the status stage committed, before the job's end was saved
    ImportJob.objects.filter(pk=job_id).update(status="processing", finished_at=None)
    resume_elsewhere(job_id)

    run_job(job_id)

    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.attempt) == ("completed", 2)


def test_a_cancel_while_parsing_an_order_that_needs_review_ends_the_job(api, org, monkeypatch):
    """Parsing holds no lock while it reads, so a cancel lands in the middle of it. The order
    then waited for review as if nothing was asked, and a review cleared the cancel."""
    from imports.services import import_job_cancel

    real = stages.STAGE_FUNCTIONS["parsing"]

    def parsing(ctx):
        import_job_cancel(job=ImportJob.objects.get(pk=ctx.job.pk))
        return real(ctx)

    monkeypatch.setitem(stages.STAGE_FUNCTIONS, "parsing", parsing)
    body = post_order(api, po_csv(2, total_off="7.00")).json()  # totals off: needs review
    run_job(body["job"]["id"])

    assert ImportJob.objects.get(pk=body["job"]["id"]).status == "cancelled"
    assert PurchaseOrder.objects.get(pk=body["purchase_order"]["id"]).status == "failed"


def test_a_retried_job_that_ended_after_its_last_stage_completes_its_order(api, org):
    """A job can end (lost on its last attempt, cancelled) after the status stage committed;
    its retry set the order back to processing, and no stage was left to complete it."""
    body = post_order(api, po_csv(2)).json()
    order_id, job_id = body["purchase_order"]["id"], body["job"]["id"]
    run_job(job_id)
    ImportJob.objects.filter(pk=job_id).update(status="failed", error_message="worker lost")

    resp = api.post(f"/api/v1/purchase-orders/{order_id}/retry")
    assert resp.status_code == 202, resp.content
    assert PurchaseOrder.objects.get(pk=order_id).status == "processing"
    run_job(job_id)

    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"
    assert ImportJob.objects.get(pk=job_id).status == "completed"
