"""Outbound calls connect only to addresses judged at connect time: a name that resolved to a
public address for the URL check and to 127.0.0.1 for the call (DNS rebinding) is refused."""

from __future__ import annotations

import socket

import pytest

from imports.jobs import run_job
from imports.purchasing import outbound
from imports.purchasing.models import DeliveryAttempt, PurchaseOrder, StoreConnection
from tests.purchasing.documents import png, po_csv
from tests.purchasing.test_workflow import post_order

pytestmark = pytest.mark.django_db(transaction=True)

PUBLIC = "93.184.216.34"


@pytest.fixture
def rebinding(monkeypatch, settings):
    """``rebind.example`` answers a public address once, then 127.0.0.1."""
    settings.SYNC_ALLOWED_HOSTS = []
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = PUBLIC if len(asked) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def _with_image(url: str) -> bytes:
    content = po_csv(1).decode().splitlines()
    row = next(i for i, ln in enumerate(content) if ln.startswith("SKU,")) + 1
    content[row] += url
    return "\n".join(content).encode()


def test_an_image_host_rebound_to_loopback_after_the_check_is_not_fetched(
    api, org, store_server, rebinding
):
    store_server.files = {"a.png": ("image/png", png())}
    url = f"http://rebind.example:{store_server.port}/files/a.png"
    body = post_order(api, _with_image(url)).json()
    run_job(body["job"]["id"])

    order = PurchaseOrder.objects.get(pk=body["purchase_order"]["id"])
    line = order.lines.get()
    assert order.status == "completed" and not line.image
    assert line.warnings == ["Image not attached: the image could not be fetched (ConnectError)."]
    assert len(rebinding) == 2  # checked once, then judged again at the connect


def test_a_store_host_rebound_to_loopback_after_the_check_gets_nothing(
    api, org, store_server, rebinding, settings
):
    settings.PO_SYNC_MAX_ATTEMPTS = 1
    StoreConnection.objects.create(
        organization=org,
        url=f"http://rebind.example:{store_server.port}/products",
        secret=store_server.secret,
    )
    body = post_order(api, po_csv(2)).json()
    run_job(body["job"]["id"])

    assert PurchaseOrder.objects.get(pk=body["purchase_order"]["id"]).status == "failed"
    attempt = DeliveryAttempt.objects.get(order_id=body["purchase_order"]["id"])
    assert attempt.outcome == "network_error" and "not public" in attempt.error
    assert "127.0.0.1" not in attempt.error
    assert store_server.requests == []


def test_a_public_host_is_called_at_the_address_it_was_judged_by(
    api, org, store_server, monkeypatch, settings
):
    """The guarded connect itself: 'shop.example' resolves (here) to the local store, which the
    rules are told to count as public; the request reaches it, TLS aside, as before."""
    settings.SYNC_ALLOWED_HOSTS = []
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: (
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            if host == "shop.example"
            else real(host, port, *a, **k)
        ),
    )
    real_public = outbound._public
    monkeypatch.setattr(outbound, "_public", lambda a: a == "127.0.0.1" or real_public(a))
    store_server.files = {"a.png": ("image/png", png())}
    with outbound.client(timeout=5) as client:
        resp = client.get(f"http://shop.example:{store_server.port}/files/a.png")
    assert resp.status_code == 200 and resp.content == png()
