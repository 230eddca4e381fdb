"""A store's answer is read only as far as its excerpt: a huge or dripping body costs a sync
worker neither memory nor time."""

from __future__ import annotations

import importlib
import time

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.db import connection

from imports.jobs import run_job
from imports.purchasing.models import DeliveryAttempt, PurchaseOrder, StoreConnection
from imports.purchasing.sync import EXCERPT_CHARS
from tests.purchasing.documents import po_csv
from tests.purchasing.test_workflow import post_order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("action", "cut"),
    [
        (("flood", 4 * 1024**3), ""),  # 4 GB, announced in Content-Length
        (("drip", 30), " (the rest came too slowly and was not read)"),
    ],
    ids=["flood", "drip"],
)
def test_a_store_answer_is_read_only_as_far_as_its_excerpt(
    api, store, store_server, settings, action, cut
):
    settings.PO_SYNC_TIMEOUT = 1.0  # each read: the drip sends a byte every 50 ms
    settings.PO_SYNC_MAX_SECONDS = 2.0  # the whole request
    store_server.script = [action]
    body = post_order(api, po_csv(2)).json()
    started = time.monotonic()
    run_job(body["job"]["id"])

    assert time.monotonic() - started < 15
    order = PurchaseOrder.objects.get(pk=body["purchase_order"]["id"])
    assert order.status == "completed"
    attempt = DeliveryAttempt.objects.get(order=order)
    assert (attempt.outcome, attempt.status_code) == ("delivered", 200)
    assert attempt.response_excerpt.startswith("x" * 10) and attempt.response_excerpt.endswith(cut)
    assert len(attempt.response_excerpt) <= EXCERPT_CHARS + len(cut)
    # what left the store before the worker closed: its socket buffers, not the 4 GB
    assert store_server.body_bytes_sent < 256 * 1024**2


def test_credentials_in_the_store_url_are_never_shown_and_survive_a_read_back(
    admin_api, viewer_api, org, local_outbound, client, django_user_model
):
    url = "http://key:p4ss@127.0.0.1:9/hook?token=t0ken&v=2"
    shown = "http://***@127.0.0.1:9/hook?token=***&v=***"
    resp = admin_api.patch(
        "/api/v1/organization/store", {"url": url, "secret": "x" * 20}, format="json"
    )
    assert resp.status_code == 200 and resp.json()["url"] == shown
    assert viewer_api.get("/api/v1/organization/store").json()["url"] == shown
    # an admin sending back what was read (with a new secret) keeps the URL as it was
    resp = admin_api.patch(
        "/api/v1/organization/store", {"url": shown, "secret": "y" * 20}, format="json"
    )
    assert resp.status_code == 200
    assert StoreConnection.objects.get(organization=org).url == url
    # an edited shown URL would store '***' as the credentials: refused, nothing changes
    edited = admin_api.patch(
        "/api/v1/organization/store", {"url": shown.replace("/hook", "/hook2")}, format="json"
    )
    assert edited.status_code == 400 and "'***'" in edited.json()["detail"]
    assert StoreConnection.objects.get(organization=org).url == url
    # nor does the admin's list show them, to any staff
    staff = django_user_model.objects.create_user("ops", password="pw-123456", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_storeconnection"))
    client.force_login(staff)
    for page in ("/admin/imports/storeconnection/", "/admin/imports/storeconnection/1/change/"):
        page = page.replace("/1/", f"/{StoreConnection.objects.get(organization=org).pk}/")
        body = client.get(page)
        assert body.status_code == 200 and b"p4ss" not in body.content
        assert b"t0ken" not in body.content and b"127.0.0.1:9/hook" in body.content


def test_a_delivery_attempt_keeps_the_url_without_its_credentials(
    api, store, store_server, settings
):
    store.url = store_server.url.replace("http://", "http://key:p4ss@") + "?token=t0ken"
    store.save()
    body = post_order(api, po_csv(2)).json()
    run_job(body["job"]["id"])
    assert PurchaseOrder.objects.get(pk=body["purchase_order"]["id"]).status == "completed"
    attempt = DeliveryAttempt.objects.get(order_id=body["purchase_order"]["id"])
    assert attempt.url == store_server.url.replace("http://", "http://***@") + "?token=***"
    assert store_server.requests  # the call itself went with the credentials
    # rows stored before attempts kept the URL redacted are redacted by migration 0008
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(url=store.url)
    with connection.schema_editor() as editor:
        importlib.import_module("imports.migrations.0008_redact_delivery_attempt_urls").redact(
            apps, editor
        )
    assert DeliveryAttempt.objects.get(pk=attempt.pk).url == attempt.url
