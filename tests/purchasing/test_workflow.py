"""Upload → real rqworker → every stage → the store (a local server) → API and events."""

from __future__ import annotations

import json

import pytest

from imports.models import ImportJob, Product
from imports.purchasing.models import (
    DeliveryAttempt,
    PurchaseOrder,
    PurchaseOrderLine,
    SyncBatch,
    WorkflowStage,
)
from realtime.events import job_topic, org_topic
from realtime.log import read_after
from tests.purchasing.documents import po_csv, upload

pytestmark = pytest.mark.django_db(transaction=True)

STAGES = [
    "parsing",
    "database_save",
    "product_drafts",
    "image_attachment",
    "sync",
    "status_update",
]


def post_order(api, content: bytes, name: str = "order.csv"):
    return api.post("/api/v1/purchase-orders", {"file": upload(content, name)}, format="multipart")


def stage_statuses(order_id: int) -> dict[str, str]:
    return dict(WorkflowStage.objects.filter(order_id=order_id).values_list("name", "status"))


def test_an_uploaded_csv_runs_every_stage_and_reaches_the_store(
    api, org, store, store_server, run_worker, settings
):
    settings.PROGRESS_MIN_INTERVAL = 0
    Product.objects.create(organization=org, sku="ACME-00002", name="Known", price="3.00")
    resp = post_order(api, po_csv(3))
    assert resp.status_code == 202, resp.content
    body = resp.json()
    assert set(body) == {"purchase_order", "job"}
    order_id, job_id = body["purchase_order"]["id"], body["job"]["id"]
    assert body["job"]["kind"] == "purchase_order" and body["job"]["status"] == "queued"
    assert body["purchase_order"]["status"] == "processing"

    run_worker()

    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "completed", ImportJob.objects.get(pk=job_id).error_message
    assert (order.po_number, order.supplier.name, str(order.total)) == (
        "PO-1001",
        "Acme Supplies",
        str(order.subtotal + order.tax),
    )
    assert stage_statuses(order_id) == {
        **dict.fromkeys(STAGES, "completed"),
        "image_attachment": "skipped",
    }
    lines = list(PurchaseOrderLine.objects.filter(order=order).select_related("product"))
    assert [ln.product.sku for ln in lines] == ["ACME-00001", "ACME-00002", "ACME-00003"]
    assert [ln.product_created for ln in lines] == [True, False, True]
    assert Product.objects.get(organization=org, sku="ACME-00001").status == "draft"
    assert Product.objects.get(organization=org, sku="ACME-00002").name == "Known"

    # the store got one signed request with the three products
    assert len(store_server.requests) == 1
    sent = store_server.requests[0]
    assert store_server.signature_ok(sent)
    batch = SyncBatch.objects.get(order=order)
    assert sent.key == str(batch.idempotency_key)
    assert [p["sku"] for p in sent.payload["products"]] == [ln.product.sku for ln in lines]
    assert sent.payload["purchase_order"]["po_number"] == "PO-1001"
    log = DeliveryAttempt.objects.get(order=order)
    assert (log.status_code, log.outcome) == (200, "delivered")

    # events: the workflow's, with the seed's fields, then job.completed
    events = read_after(job_topic(job_id), None).events
    types = [e["type"] for e in events]
    assert types[:2] == ["job.queued", "job.started"]
    assert types[-2:] == ["workflow.completion", "job.completed"]
    stage_events = [(e["stage"], e["status"]) for e in events if e["type"] == "workflow.stage"]
    assert stage_events == [
        (s, status)
        for s in STAGES
        for status in ("started", "completed" if s != "image_attachment" else "skipped")
    ]
    for e in events:
        if e["type"].startswith("workflow."):
            assert e["poId"] == order_id and e["workflowId"] == job_id, e
    progress = [e for e in events if e["type"] == "workflow.progress"]
    assert progress and all(0 <= e["progress"] <= 100 for e in progress)
    completion = json.loads(json.dumps(events[-2]))
    assert completion["lineItems"] == 3 and completion["confidence"] == 1.0
    # the organization's feed has the same
    assert [e["type"] for e in read_after(org_topic(org.id), None).events] == types

    detail = api.get(f"/api/v1/purchase-orders/{order_id}").json()
    assert detail["status"] == "completed" and detail["confidence"] == 1.0
    assert [s["name"] for s in detail["stages"]] == STAGES
    assert detail["lines"][0]["product"]["sku"] == "ACME-00001"
    assert detail["lines"][0]["unit_cost"] == "2.2500"
    page = api.get(f"/api/v1/purchase-orders/{order_id}/lines?limit=2&offset=1").json()
    assert page["count"] == 3 and [ln["line_number"] for ln in page["results"]] == [2, 3]


def test_without_a_store_endpoint_sync_is_skipped(api, org, run_worker):
    order_id = post_order(api, po_csv(2)).json()["purchase_order"]["id"]
    run_worker()
    statuses = stage_statuses(order_id)
    assert statuses["sync"] == "skipped" and statuses["status_update"] == "completed"
    assert WorkflowStage.objects.get(order_id=order_id, name="sync").message == (
        "No store endpoint is set for the organization"
    )


def test_a_transactional_stage_holds_its_job_before_it_touches_the_order(api, org, monkeypatch):
    """Every path that locks both an order's job and the order takes the job first (a retry, a
    review, a cancel, the lost-worker check). So must the runner's transactional stages:
    ``database_save`` saved the order before its first progress report locked the job, and a
    retry landing in between could deadlock with it."""
    import psycopg
    from django.db import connection

    from imports.jobs import run_job
    from imports.purchasing import stages

    real = stages.STAGE_FUNCTIONS["database_save"]
    seen: list[str] = []

    def database_save(ctx):
        db = connection.settings_dict
        with psycopg.connect(
            dbname=db["NAME"],
            user=db["USER"],
            host=db["HOST"],
            port=db["PORT"],
            password=db["PASSWORD"] or None,
            autocommit=True,
        ) as other:
            try:
                other.execute(
                    "SELECT id FROM imports_importjob WHERE id = %s FOR UPDATE NOWAIT",
                    [ctx.job.pk],
                )
                seen.append("free")
            except psycopg.errors.LockNotAvailable:
                seen.append("held by the stage")
        return real(ctx)

    monkeypatch.setitem(stages.STAGE_FUNCTIONS, "database_save", database_save)
    resp = post_order(api, po_csv(2)).json()
    run_job(resp["job"]["id"])
    assert seen == ["held by the stage"]
    assert PurchaseOrder.objects.get(pk=resp["purchase_order"]["id"]).status == "completed"
