"""The image stage's bounds: a whole fetch's time, decodes at once, and results kept as they
come (a crash mid-stage refetches nothing already stored, and starts no queued fetch)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config.devservers import free_port
from imports.jobs import run_job
from imports.purchasing import images, outbound
from imports.purchasing.images import FetchedImage, ImageRefused
from imports.purchasing.models import PurchaseOrder, PurchaseOrderLine
from tests.purchasing.documents import png, po_csv
from tests.purchasing.test_workflow import post_order, stage_statuses


@pytest.fixture
def drip_server():
    """Answers every GET as a PNG, one byte every 50 ms, for ten seconds."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.endswith("/slow-head.png"):  # the status line itself, a byte at a time
                try:
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n" * 10:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"\x89")
                    self.wfile.flush()
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/slow.png"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_sending_a_byte_at_a_time_is_cut_off_at_the_fetch_limit(
    drip_server, local_outbound, settings
):
    settings.PO_IMAGE_MAX_SECONDS = 0.5
    started = time.monotonic()
    with outbound.client(timeout=5) as client, pytest.raises(ImageRefused) as refused:
        images._download(client, drip_server)
    assert "took more than 0.5 s to fetch" in str(refused.value)
    assert time.monotonic() - started < 3  # each read came within the 5 s read timeout


def test_a_server_sending_its_headers_a_byte_at_a_time_is_cut_off_too(
    drip_server, local_outbound, settings
):
    settings.PO_IMAGE_MAX_SECONDS = 0.5
    with outbound.client(timeout=5) as client, pytest.raises(ImageRefused) as refused:
        images._download(client, drip_server.replace("/slow.png", "/slow-head.png"))
    assert "took more than 0.5 s to fetch" in str(refused.value)


def test_decodes_wait_for_a_free_slot():
    slots = threading.BoundedSemaphore(1)
    slots.acquire()  # the one slot is taken by another decode
    done = threading.Event()
    thread = threading.Thread(target=lambda: (images._thumbnail(png(), slots), done.set()))
    thread.start()
    assert not done.wait(0.3)
    slots.release()
    assert done.wait(5)
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_images_fetched_before_a_crash_stay_stored_and_queued_fetches_never_start(
    api, org, monkeypatch, settings
):
    settings.PO_IMAGE_CONCURRENCY = 1
    monkeypatch.setattr(images, "SAVE_EVERY", 1)
    content = po_csv(6).decode().splitlines()
    table_start = next(i for i, ln in enumerate(content) if ln.startswith("SKU,"))
    for n in range(1, 7):
        content[table_start + n] += f"https://images.example/{n}.png"
    started: list[str] = []

    def fetch_image(client, url, folder, decoding):
        started.append(url.rsplit("/", 1)[1])
        if url.endswith("/2.png"):
            raise RuntimeError("the worker's fetch thread crashed")
        time.sleep(0.2 if url.endswith("/1.png") else 1.0)  # room for the stage to stop
        return FetchedImage(url, image_name=f"{folder}/1.png", thumbnail_name=f"{folder}/t.png")

    monkeypatch.setattr(images, "fetch_image", fetch_image)
    body = post_order(api, "\n".join(content).encode()).json()
    run_job(body["job"]["id"])

    order_id = body["purchase_order"]["id"]
    assert stage_statuses(order_id)["image_attachment"] == "failed"
    assert PurchaseOrder.objects.get(pk=order_id).status == "failed"
    stored = PurchaseOrderLine.objects.filter(order_id=order_id).exclude(image="")
    assert list(stored.values_list("line_number", flat=True)) == [1]
    # the one fetch thread may have taken the next URL; none after it started
    assert started[:2] == ["1.png", "2.png"] and len(started) <= 3


@pytest.mark.django_db(transaction=True)
def test_lines_that_share_an_image_are_fetched_once_and_all_show_it(api, org, monkeypatch):
    content = po_csv(4).decode().splitlines()
    table_start = next(i for i, ln in enumerate(content) if ln.startswith("SKU,"))
    for n in range(1, 5):
        content[table_start + n] += "https://images.example/same.png" if n < 4 else ""
    fetched: list[str] = []

    def fetch_image(client, url, folder, decoding):
        fetched.append(url)
        return FetchedImage(url, image_name=f"{folder}/s.png", thumbnail_name=f"{folder}/t.png")

    monkeypatch.setattr(images, "fetch_image", fetch_image)
    body = post_order(api, "\n".join(content).encode()).json()
    run_job(body["job"]["id"])

    lines = PurchaseOrderLine.objects.filter(order_id=body["purchase_order"]["id"])
    assert fetched == ["https://images.example/same.png"]
    assert sorted(lines.exclude(image="").values_list("line_number", flat=True)) == [1, 2, 3]
    assert lines.get(line_number=4).image == ""
