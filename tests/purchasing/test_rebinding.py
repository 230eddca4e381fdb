"""Outbound calls connect only to addresses judged at connect time: a name that resolved to a
public address for the URL check and to 127.0.0.1 for the call (DNS rebinding) is refused."""

from __future__ import annotations

import socket

import httpx
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


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server for 'localhost' with a certificate of its own (and the context that
    trusts it)."""
    import datetime as dt
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert_file, key_file)
    httpd.socket = served.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    trusting = ssl.create_default_context(cafile=str(cert_file))
    yield httpd.server_address[1], trusting
    httpd.shutdown()
    httpd.server_close()


def test_tls_through_the_guarded_connect_still_checks_the_certificate(tls_server, settings):
    port, trusting = tls_server
    settings.SYNC_ALLOWED_HOSTS = ["localhost"]
    url = f"https://localhost:{port}/"
    with outbound.client(verify=trusting, timeout=5) as client:
        resp = client.get(url)
    assert resp.status_code == 200 and resp.content == b"ok"
    # the system's authorities do not know this certificate: refused at the handshake
    with outbound.client(timeout=5) as client, pytest.raises(httpx.ConnectError) as refused:
        client.get(url)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    # within a deadline the handshake goes through the bounded stream too
    with outbound.deadline(5), outbound.client(verify=trusting, timeout=5) as client:
        assert client.get(url).status_code == 200
