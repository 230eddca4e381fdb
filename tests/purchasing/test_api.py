"""The purchase-order API: upload, list and filters, detail, review, retry, store settings,
tenancy and roles; and the review → continue path and images through a real worker."""

from __future__ import annotations

import pytest

from imports.models import Product
from imports.purchasing.models import (
    ParsingTemplate,
    PurchaseOrder,
    PurchaseOrderLine,
    StoreConnection,
    WorkflowStage,
)
from realtime.events import job_topic
from realtime.log import read_after
from tests.purchasing.documents import KRAEMER_TEXT, png, po_csv, upload
from tests.purchasing.test_workflow import post_order

pytestmark = pytest.mark.django_db(transaction=True)


def test_upload_answers_202_with_the_order_and_its_job(api, org):
    resp = post_order(api, po_csv(2))
    assert resp.status_code == 202
    body = resp.json()
    assert body["purchase_order"]["status"] == "processing"
    assert body["purchase_order"]["original_filename"] == "order.csv"
    assert body["job"]["kind"] == "purchase_order"
    assert resp["Location"] == f"/api/v1/purchase-orders/{body['purchase_order']['id']}"


@pytest.mark.parametrize(
    ("name", "content", "status", "message"),
    [
        ("order.doc", b"x", 400, "not a purchase-order format"),
        ("order.csv", b"", 400, "empty"),
    ],
)
def test_bad_uploads_are_refused_by_name(api, name, content, status, message):
    resp = api.post("/api/v1/purchase-orders", {"file": upload(content, name)}, format="multipart")
    assert resp.status_code == status
    assert message in resp.json()["detail"]
    assert PurchaseOrder.objects.count() == 0


def test_a_missing_file_is_a_400(api):
    resp = api.post("/api/v1/purchase-orders", {}, format="multipart")
    assert resp.status_code == 400 and "file" in resp.json()["detail"]


def test_viewers_read_operators_act_and_other_tenants_see_nothing(
    api, viewer_api, outsider_api, org
):
    order_id = post_order(api, po_csv(1)).json()["purchase_order"]["id"]
    assert viewer_api.get(f"/api/v1/purchase-orders/{order_id}").status_code == 200
    assert viewer_api.get("/api/v1/purchase-orders").json()["count"] == 1
    refused = viewer_api.post(
        "/api/v1/purchase-orders", {"file": upload(po_csv(1))}, format="multipart"
    )
    assert refused.status_code == 403 and "operator" in refused.json()["detail"]
    assert viewer_api.post(f"/api/v1/purchase-orders/{order_id}/retry").status_code == 403
    for path in ("", "/retry", "/review", "/lines"):
        url = f"/api/v1/purchase-orders/{order_id}{path}"
        resp = (
            outsider_api.post(url, {}, format="json")
            if path in ("/retry", "/review")
            else outsider_api.get(url)
        )
        assert resp.status_code == 404, (path, resp.status_code)
    assert outsider_api.get("/api/v1/purchase-orders").json()["count"] == 0


def test_list_filters_and_caps_its_page_size(api, org):
    for i in range(3):
        post_order(api, po_csv(1, po_number=f"PO-{i}", supplier="Acme" if i else "Globex"))
    PurchaseOrder.objects.filter(po_number="").update(supplier_name="")
    PurchaseOrder.objects.filter(pk=PurchaseOrder.objects.order_by("id").first().pk).update(
        status="failed", supplier_name="Globex"
    )
    assert api.get("/api/v1/purchase-orders?status=failed").json()["count"] == 1
    assert api.get("/api/v1/purchase-orders?supplier=globex").json()["count"] == 1
    bad = api.get("/api/v1/purchase-orders?status=lost")
    assert bad.status_code == 400 and "needs_review" in bad.json()["detail"]
    page = api.get("/api/v1/purchase-orders?limit=100000").json()
    assert "limit=200" in (page["next"] or "limit=200") and len(page["results"]) == 3


def test_retry_of_an_order_that_did_not_fail_is_a_409(api, org):
    order_id = post_order(api, po_csv(1)).json()["purchase_order"]["id"]
    resp = api.post(f"/api/v1/purchase-orders/{order_id}/retry")
    assert resp.status_code == 409 and "Only a failed order" in resp.json()["detail"]
    resp = api.post(f"/api/v1/purchase-orders/{order_id}/review", {"confirm": True}, format="json")
    assert resp.status_code == 409 and "not waiting for review" in resp.json()["detail"]


def test_an_order_below_the_threshold_waits_then_goes_on_after_review(api, org, run_worker):
    resp = post_order(api, KRAEMER_TEXT.encode(), "kraemer.txt")
    order_id, job_id = resp.json()["purchase_order"]["id"], resp.json()["job"]["id"]
    run_worker()

    detail = api.get(f"/api/v1/purchase-orders/{order_id}").json()
    assert detail["status"] == "needs_review"
    assert detail["job"]["status"] == "pending" and detail["job"]["stage"] == "needs_review"
    # no supplier template: the generic one finds all but the supplier (no "Supplier:" line)
    assert detail["confidence"] == 0.0
    assert detail["field_confidence"]["supplier"]["reasons"] == ["not found in the document"]
    assert detail["field_confidence"]["po_number"]["score"] == 0.75
    assert detail["field_confidence"]["po_number"]["reasons"][0].startswith("generic template")
    assert detail["lines"] == []  # nothing saved before the review
    stages = {s["name"]: s["status"] for s in detail["stages"]}
    assert stages["parsing"] == "completed" and stages["database_save"] == "pending"
    waiting = [
        e for e in read_after(job_topic(job_id), None).events if e.get("status") == "waiting"
    ]
    assert waiting and waiting[-1]["stage"] == "needs_review"

    bad = api.post(f"/api/v1/purchase-orders/{order_id}/review", {}, format="json")
    assert bad.status_code == 400
    bad = api.post(
        f"/api/v1/purchase-orders/{order_id}/review",
        {"lines": [{"line_number": 99, "quantity": 1}]},
        format="json",
    )
    assert bad.status_code == 400 and "Line 99" in bad.json()["detail"]
    resp = api.post(
        f"/api/v1/purchase-orders/{order_id}/review",
        {
            "fields": {"supplier": "Kraemer Werkzeuge GmbH"},
            "lines": [{"line_number": 1, "description": "Hammer 500 g"}],
        },
        format="json",
    )
    assert resp.status_code == 202, resp.content
    assert resp.json()["job"]["status"] == "queued" and resp.json()["job"]["attempt"] == 2
    run_worker()

    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "completed"
    assert order.supplier.name == "Kraemer Werkzeuge GmbH"
    assert order.field_confidence["supplier"]["reasons"][-1] == "corrected by olga"
    assert order.field_confidence["po_number"]["reasons"][-1] == "confirmed by olga"
    assert order.lines.get(line_number=1).description == "Hammer 500 g"
    assert WorkflowStage.objects.get(order=order, name="parsing").attempt == 1  # not parsed twice
    assert Product.objects.filter(organization=org, sku="KW-300", status="draft").exists()


def test_an_organization_template_is_used_for_text_orders(api, org, run_worker):
    ParsingTemplate.objects.create(
        organization=org,
        name="Kraemer",
        keywords=["Kraemer Werkzeuge"],
        fields={"po_number": r"PO Number:\s*(\S+)", "supplier": r"^(Kraemer Werkzeuge GmbH)"},
        decimal_separator=",",
        date_formats=["%d.%m.%Y"],
    )
    order_id = post_order(api, KRAEMER_TEXT.encode(), "k.txt").json()["purchase_order"]["id"]
    run_worker()
    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "completed", order.review_reasons
    assert order.template_name == "Kraemer" and str(order.total) == "3343.31"


def test_the_same_supplier_and_number_again_is_saved_as_a_duplicate(api, org, run_worker):
    first = post_order(api, po_csv(2)).json()["purchase_order"]["id"]
    run_worker()
    second = post_order(api, po_csv(2)).json()["purchase_order"]["id"]
    run_worker()
    detail = api.get(f"/api/v1/purchase-orders/{second}").json()
    assert detail["status"] == "completed" and detail["duplicate_of"] == first
    assert any("already received" in w for w in detail["warnings"])
    # no product twice: the second order links the drafts the first one made
    assert Product.objects.filter(organization=org).count() == 2
    assert not PurchaseOrderLine.objects.filter(order_id=second, product_created=True).exists()


def test_a_scanned_pdf_fails_the_parsing_stage_with_the_ocr_message(api, org, run_worker):
    from tests.purchasing.documents import pdf_without_text

    resp = post_order(api, pdf_without_text(), "scan.pdf")
    order_id, job_id = resp.json()["purchase_order"]["id"], resp.json()["job"]["id"]
    run_worker()
    detail = api.get(f"/api/v1/purchase-orders/{order_id}").json()
    assert detail["status"] == "failed"
    assert detail["job"]["error_message"].startswith("Stage 'parsing' failed: The PDF has no text")
    errors = [
        e for e in read_after(job_topic(job_id), None).events if e["type"] == "workflow.error"
    ]
    assert errors[0]["stage"] == "parsing" and "OCR" in errors[0]["error"]
    assert errors[0]["poId"] == order_id and errors[0]["workflowId"] == job_id


def test_images_are_attached_with_thumbnails_and_bad_ones_are_line_warnings(
    api, org, store_server, local_outbound, fast_sync, run_worker, tmp_path
):
    store_server.files = {
        "a.png": ("image/png", png()),
        "page.html": ("text/html", b"<html></html>"),
        "fake.png": ("image/png", b"not an image at all"),
    }
    content = po_csv(4).decode().splitlines()
    urls = ["a.png", "page.html", "fake.png", "missing.png"]
    table_start = next(i for i, ln in enumerate(content) if ln.startswith("SKU,"))
    for offset, name in enumerate(urls, start=1):
        content[table_start + offset] += store_server.file_url(name)
    order_id = post_order(api, "\n".join(content).encode()).json()["purchase_order"]["id"]
    run_worker()

    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "completed"
    stage = WorkflowStage.objects.get(order=order, name="image_attachment")
    assert stage.status == "completed" and stage.summary == {"urls": 4, "attached": 1, "failed": 3}
    lines = list(order.lines.order_by("line_number"))
    assert lines[0].image and lines[0].thumbnail and not lines[0].warnings
    from PIL import Image

    with Image.open(lines[0].thumbnail.path) as thumb:
        assert max(thumb.size) <= 200
    detail = api.get(f"/api/v1/purchase-orders/{order_id}").json()
    thumb_url = detail["lines"][0]["thumbnail"]
    assert thumb_url == f"/purchase-orders/{order_id}/lines/1/thumbnail"
    assert detail["lines"][1]["image"] is None
    assert "not JPEG, PNG, GIF or WebP" in lines[1].warnings[0]
    assert "not an image that can be read" in lines[2].warnings[0]
    assert "HTTP 404" in lines[3].warnings[0]


def test_image_urls_on_private_addresses_are_refused_by_default(
    api, org, store_server, run_worker, settings
):
    store_server.files = {"a.png": ("image/png", png())}
    content = po_csv(1).decode().splitlines()
    table_start = next(i for i, ln in enumerate(content) if ln.startswith("SKU,"))
    content[table_start + 1] += store_server.file_url("a.png")
    order_id = post_order(api, "\n".join(content).encode()).json()["purchase_order"]["id"]
    run_worker()
    line = PurchaseOrderLine.objects.get(order_id=order_id)
    assert not line.image
    assert "loopback, private or link-local" in line.warnings[0]
    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"


def test_only_organization_admins_set_the_store_and_the_secret_is_never_shown(
    api, admin_api, viewer_api, org, local_outbound
):
    assert api.get("/api/v1/organization/store").json() == {
        "url": "",
        "secret_set": False,
        "updated_at": None,
    }
    refused = api.patch(
        "/api/v1/organization/store", {"url": "http://127.0.0.1:9/x"}, format="json"
    )
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    short = admin_api.patch(
        "/api/v1/organization/store",
        {"url": "http://127.0.0.1:9/x", "secret": "short"},
        format="json",
    )
    assert short.status_code == 400 and "16 characters" in short.json()["detail"]
    ok = admin_api.patch(
        "/api/v1/organization/store",
        {"url": "http://127.0.0.1:9/x", "secret": "a-long-enough-secret"},
        format="json",
    )
    assert ok.status_code == 200
    assert ok.json()["secret_set"] is True and "secret" not in ok.json()
    assert viewer_api.get("/api/v1/organization/store").json()["url"] == "http://127.0.0.1:9/x"
    assert StoreConnection.objects.get(organization=org).secret == "a-long-enough-secret"


def test_a_store_url_on_a_private_address_is_refused_unless_allowed(admin_api, org, settings):
    settings.SYNC_ALLOWED_HOSTS = []
    for url in ("http://127.0.0.1:8000/x", "http://10.1.2.3/x", "http://169.254.169.254/x"):
        resp = admin_api.patch(
            "/api/v1/organization/store", {"url": url, "secret": "x" * 20}, format="json"
        )
        assert resp.status_code == 400, url
        assert "loopback, private or link-local" in resp.json()["detail"]
    settings.SYNC_ALLOWED_HOSTS = ["store.example.com"]
    resp = admin_api.patch(
        "/api/v1/organization/store",
        {"url": "https://evil.example.net/x", "secret": "x" * 20},
        format="json",
    )
    assert resp.status_code == 400 and "not in SYNC_ALLOWED_HOSTS" in resp.json()["detail"]


def test_a_review_whose_enqueue_fails_is_a_503_and_a_retry_goes_on_with_it(
    api, org, run_worker, monkeypatch
):
    """Redis answers the check, then fails as django-rq enqueues on commit: the review is kept,
    the job is failed (not left ``queued`` with nothing behind it), and a retry goes on from the
    reviewed parse."""
    import django_rq
    from django_rq.queues import DjangoRQ
    from redis import Redis

    from config.devservers import free_port
    from imports.models import ImportJob

    resp = post_order(api, KRAEMER_TEXT.encode(), "kraemer.txt")
    order_id, job_id = resp.json()["purchase_order"]["id"], resp.json()["job"]["id"]
    run_worker()
    assert PurchaseOrder.objects.get(pk=order_id).status == "needs_review"

    def dead_queue(name="default", **kw):
        dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        return DjangoRQ(name, connection=dead, commit_mode="on_db_commit")

    with monkeypatch.context() as m:
        m.setattr(django_rq, "get_queue", dead_queue)
        resp = api.post(
            f"/api/v1/purchase-orders/{order_id}/review",
            {"fields": {"supplier": "Kraemer Werkzeuge GmbH"}},
            format="json",
        )
    assert resp.status_code == 503, resp.content
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "failed" and "could not be queued" in job.error_message
    assert PurchaseOrder.objects.get(pk=order_id).status == "failed"

    assert api.post(f"/api/v1/purchase-orders/{order_id}/retry").status_code == 202
    run_worker()
    order = PurchaseOrder.objects.get(pk=order_id)
    assert order.status == "completed" and order.supplier.name == "Kraemer Werkzeuge GmbH"
    assert WorkflowStage.objects.get(order=order, name="parsing").attempt == 1  # not parsed again
