"""The purchase-order pages without JavaScript: upload, watch, review, retry; and the admin."""

from __future__ import annotations

import re

import pytest

from imports.purchasing.models import PurchaseOrder, StoreConnection
from tests.fixtures.accounts import member
from tests.purchasing.documents import KRAEMER_TEXT, po_csv, upload

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_pages_need_a_login_and_hide_other_tenants_orders(client, api, org, outsider):
    order_id = api.post(
        "/api/v1/purchase-orders", {"file": upload(po_csv(1))}, format="multipart"
    ).json()["purchase_order"]["id"]
    assert client.get("/purchase-orders/").status_code == 302
    client.force_login(outsider)
    assert client.get(f"/purchase-orders/{order_id}/").status_code == 404
    assert client.post(f"/purchase-orders/{order_id}/retry").status_code == 404


def test_form_upload_then_the_order_page_shows_stages_lines_products_and_deliveries(
    client, operator, org, store, store_server, run_worker
):
    client.force_login(operator)
    page = client.get("/purchase-orders/").content.decode()
    assert "Upload a purchase order" in page and 'data-stream="/api/v1/realtime/events' in page
    resp = client.post("/purchase-orders/", {"file": upload(po_csv(3), "spring.csv")})
    assert resp.status_code == 302
    order = PurchaseOrder.objects.get()
    assert resp["Location"] == f"/purchase-orders/{order.id}/"
    queued = client.get(resp["Location"]).content.decode()
    assert "spring.csv" in queued and 'data-segment="parsing" data-status="pending"' in queued

    run_worker()

    page = client.get(f"/purchase-orders/{order.id}/").content.decode()
    assert "PO PO-1001" in page
    assert page.count('data-status="completed"') >= 5
    assert 'data-segment="image_attachment" data-status="skipped"' in page
    assert "ACME-00001" in page and "draft" in page
    assert "HTTP 200 delivered" in page  # the delivery log
    assert "3 products sent in 1 requests" in page  # the sync stage's message
    listing = client.get("/purchase-orders/").content.decode()
    assert "PO-1001" in listing and "Completed today" in listing
    completed_card = re.search(r'<span class="count">(\d+)</span><span>Completed today', listing)
    assert completed_card and completed_card.group(1) == "1"


def test_a_weak_field_is_highlighted_with_its_reason_and_the_review_form_continues(
    client, operator, org, run_worker
):
    client.force_login(operator)
    client.post("/purchase-orders/", {"file": upload(KRAEMER_TEXT.encode(), "kraemer.txt")})
    run_worker()
    order = PurchaseOrder.objects.get()
    page = client.get(f"/purchase-orders/{order.id}/").content.decode()
    assert "Waiting for review." in page
    assert re.search(r'<tr class="weak" data-field-name="supplier">', page)
    assert "not found in the document" in page
    assert "generic template (no supplier template matched)" in page
    assert 'name="line-2-description"' in page  # the lines to check are editable

    resp = client.post(
        f"/purchase-orders/{order.id}/review",
        {"field-supplier": "Kraemer Werkzeuge GmbH", "line-2-quantity": "5"},
    )
    assert resp.status_code == 302
    run_worker()
    order.refresh_from_db()
    assert order.status == "completed" and order.supplier_name == "Kraemer Werkzeuge GmbH"


def test_a_viewer_sees_no_forms_and_cannot_review_or_retry(client, api, viewer, org, run_worker):
    order_id = api.post(
        "/api/v1/purchase-orders",
        {"file": upload(KRAEMER_TEXT.encode(), "k.txt")},
        format="multipart",
    ).json()["purchase_order"]["id"]
    run_worker()
    client.force_login(viewer)
    page = client.get(f"/purchase-orders/{order_id}/").content.decode()
    assert "Waiting for review." in page and 'id="review-form"' not in page
    assert "Upload a purchase order" not in client.get("/purchase-orders/").content.decode()
    client.post(f"/purchase-orders/{order_id}/review", {"field-supplier": "X"})
    assert PurchaseOrder.objects.get(pk=order_id).status == "needs_review"


def test_a_failed_order_offers_retry_and_the_retry_resumes(
    client, operator, org, store, store_server, fast_sync, run_worker
):
    store_server.script = [500, 500, 500, 500]
    client.force_login(operator)
    client.post("/purchase-orders/", {"file": upload(po_csv(2))})
    run_worker()
    order = PurchaseOrder.objects.get()
    page = client.get(f"/purchase-orders/{order.id}/").content.decode()
    assert "Retry from the failed stage" in page
    assert "Stage &#x27;sync&#x27; failed" in page
    assert page.count("HTTP 500 retry") == 4
    client.post(f"/purchase-orders/{order.id}/retry")
    run_worker()
    order.refresh_from_db()
    assert order.status == "completed"


def test_an_order_s_job_retried_over_the_jobs_api_takes_its_order_along(
    api, store, store_server, fast_sync, run_worker
):
    store_server.script = [500, 500, 500, 500]
    resp = api.post("/api/v1/purchase-orders", {"file": upload(po_csv(2))}, format="multipart")
    order_id, job_id = resp.json()["purchase_order"]["id"], resp.json()["job"]["id"]
    run_worker()
    assert PurchaseOrder.objects.get(pk=order_id).status == "failed"
    resp = api.post(f"/api/v1/jobs/{job_id}/retry")
    assert resp.status_code == 202, resp.content
    assert (resp.json()["status"], resp.json()["attempt"]) == ("queued", 2)
    # the order's own retry: the order runs again with its job, not left "failed" meanwhile
    assert PurchaseOrder.objects.get(pk=order_id).status == "processing"
    run_worker()
    assert PurchaseOrder.objects.get(pk=order_id).status == "completed"


def test_an_order_s_retry_whose_enqueue_fails_is_a_503_and_leaves_the_order_failed(
    api, store, store_server, fast_sync, run_worker, monkeypatch
):
    """Redis answers the check, then fails as django-rq enqueues on commit: the job is not left
    ``queued`` with nothing behind it, and its order does not stay ``processing``."""
    import django_rq
    from django_rq.queues import DjangoRQ
    from redis import Redis

    from config.devservers import free_port
    from imports.models import ImportJob

    store_server.script = [500, 500, 500, 500]
    resp = api.post("/api/v1/purchase-orders", {"file": upload(po_csv(1))}, format="multipart")
    order_id, job_id = resp.json()["purchase_order"]["id"], resp.json()["job"]["id"]
    run_worker()

    def dead_queue(name="default", **kw):
        dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        return DjangoRQ(name, connection=dead, commit_mode="on_db_commit")

    monkeypatch.setattr(django_rq, "get_queue", dead_queue)
    for path in (f"/api/v1/jobs/{job_id}/retry", f"/api/v1/purchase-orders/{order_id}/retry"):
        resp = api.post(path)
        assert resp.status_code == 503, resp.content
        assert "job queue (Redis) is not reachable" in resp.json()["detail"]
        job = ImportJob.objects.get(pk=job_id)
        assert job.status == "failed" and "could not be queued" in job.error_message
        assert PurchaseOrder.objects.get(pk=order_id).status == "failed"


def test_the_admin_lists_orders_and_keeps_the_store_secret(client, org, store):
    admin = member(org, "root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    assert client.get("/admin/imports/purchaseorder/").status_code == 200
    for model in ("parsingtemplate/add", "syncbatch", "deliveryattempt", "purchaseorderline"):
        assert client.get(f"/admin/imports/{model}/").status_code == 200, model
    url = f"/admin/imports/storeconnection/{store.pk}/change/"
    page = client.get(url).content.decode()
    assert store.secret not in page
    resp = client.post(url, {"organization": org.pk, "url": store.url, "secret": ""})
    assert resp.status_code == 302
    assert StoreConnection.objects.get(pk=store.pk).secret == store.secret
    bad = client.post(
        "/admin/imports/parsingtemplate/add/",
        {
            "organization": org.pk,
            "name": "Broken",
            "keywords": '["x"]',
            "fields": '{"po_number": "(unclosed"}',
            "line_pattern": "",
            "decimal_separator": "auto",
            "date_formats": "[]",
            "currency": "",
            "priority": 0,
        },
    )
    assert bad.status_code == 200 and "po_number: missing )" in bad.content.decode()


def test_line_images_are_served_to_the_organization_only(
    client, api, operator, outsider, org, store_server, local_outbound, fast_sync, run_worker
):
    from tests.purchasing.documents import png

    store_server.files = {"a.png": ("image/png", png((640, 480)))}
    content = po_csv(1).decode().splitlines()
    table_start = next(i for i, ln in enumerate(content) if ln.startswith("SKU,"))
    content[table_start + 1] += store_server.file_url("a.png")
    order_id = api.post(
        "/api/v1/purchase-orders", {"file": upload("\n".join(content).encode())}, format="multipart"
    ).json()["purchase_order"]["id"]
    run_worker()
    url = f"/purchase-orders/{order_id}/lines/1/thumbnail"
    client.force_login(operator)
    assert url in client.get(f"/purchase-orders/{order_id}/").content.decode()
    resp = client.get(url)
    assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
    assert b"".join(resp.streaming_content).startswith(b"\x89PNG")
    assert client.get(f"/purchase-orders/{order_id}/lines/1/secret").status_code == 404
    client.force_login(outsider)
    assert client.get(url).status_code == 404
