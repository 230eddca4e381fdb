"""Purchase-order workflow: one order of --lines lines through every stage, timed per stage.

    python -m config.devservers exec -- .venv/bin/python bench/po_workflow.py          # 5,000 x 3
    python -m config.devservers exec -- .venv/bin/python bench/po_workflow.py --quick  # 200 x 1

Each run: a fresh organization with a store endpoint (a local HTTP server in this process that
checks every signature and answers 200), a CSV order (Key: value block + line table) whose every
--image-every-th line has an image URL served by the same local server, uploaded through the
service, then a real `rqworker --burst` process runs the job. Reported: each stage's duration
(its row's finished_at - started_at), the stage sum, end to end (job enqueued -> completed,
including the worker's start), and the store's requests. Medians over --runs runs. Default
settings, except SYNC_ALLOWED_HOSTS=127.0.0.1 (the local store is loopback).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import os
import statistics
import subprocess
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["SYNC_ALLOWED_HOSTS"] = "127.0.0.1"
django.setup()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402

from imports.models import ImportJob, Organization  # noqa: E402
from imports.purchasing.models import (  # noqa: E402
    PurchaseOrder,
    StoreConnection,
    WorkflowStage,
)
from imports.purchasing.services import purchase_order_create  # noqa: E402
from imports.purchasing.workflow import STAGES  # noqa: E402

SECRET = "bench-signing-secret-0123456789"


class Store:
    """The stand-in store: verifies signatures, counts requests and distinct keys."""

    def __init__(self) -> None:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (320, 240), "teal").save(buf, format="PNG")
        self.png = buf.getvalue()
        self.requests = 0
        self.keys: set[str] = set()
        self.bad_signatures = 0
        self.products = 0
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # image host
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(store.png)))
                self.end_headers()
                self.wfile.write(store.png)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                store.requests += 1
                store.bad_signatures += self.headers["X-Intake-Signature"] != want
                key = self.headers["Idempotency-Key"]
                if key not in store.keys:
                    store.keys.add(key)
                    store.products += body.count(b'"sku":')
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


def order_csv(lines: int, image_every: int, base: str) -> bytes:
    out = [
        "PO Number: BENCH-1",
        "Supplier: Bench Supplies",
        "Order Date: 2026-12-01",
        "Currency: EUR",
        "",
        "SKU,Description,Qty,Unit Price,Line Total,Image URL",
    ]
    subtotal = Decimal(0)
    for i in range(1, lines + 1):
        qty, cost = i % 9 + 1, Decimal(f"{i % 97 + 1}.35")
        subtotal += qty * cost
        image = f"{base}/img/{i}.png" if image_every and i % image_every == 0 else ""
        out.append(f"B-{i:07d},Bench part {i},{qty},{cost},{qty * cost},{image}")
    tax = (subtotal * Decimal("0.19")).quantize(Decimal("0.01"))
    out += ["", f"Subtotal: {subtotal}", f"Tax: {tax}", f"Total: {subtotal + tax}"]
    return "\n".join(out).encode()


def run_once(lines: int, image_every: int, run: int) -> dict[str, float]:
    store = Store()
    org = Organization.objects.create(
        name=f"Bench PO {time.time_ns()}", slug=f"bench-po-{time.time_ns()}"
    )
    StoreConnection.objects.create(organization=org, url=f"{store.base}/products", secret=SECRET)
    content = order_csv(lines, image_every, store.base)
    started = time.perf_counter()
    order = purchase_order_create(
        organization=org, user=None, upload=SimpleUploadedFile("bench.csv", content)
    )
    env = {**os.environ, "SYNC_ALLOWED_HOSTS": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "rqworker", "high", "default", "low", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    order = PurchaseOrder.objects.get(pk=order.pk)
    job = ImportJob.objects.get(pk=order.job_id)
    if order.status != "completed":
        sys.exit(f"run {run}: order is {order.status}: {job.error_message}\n{proc.stderr[-2000:]}")
    stages = {s.name: s for s in WorkflowStage.objects.filter(job=job)}
    result = {name: stages[name].duration_seconds or 0.0 for name in STAGES}
    result["stage sum"] = sum(result[n] for n in STAGES)
    result["queued -> started (worker start)"] = (job.started_at - job.created_at).total_seconds()
    result["end to end"] = (job.finished_at - job.created_at).total_seconds()
    result["wall (with worker start)"] = wall
    result["requests"] = store.requests
    result["products at the store"] = store.products
    result["bad signatures"] = store.bad_signatures
    result["images"] = stages["image_attachment"].summary.get("attached", 0)
    store.httpd.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image-every", type=int, default=50, help="0: no images")
    parser.add_argument("--quick", action="store_true", help="200 lines, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.runs = 200, 1
    command = "python bench/po_workflow.py " + " ".join(sys.argv[1:])
    print(f"$ {command}".rstrip())
    print(f"{args.lines:,} lines, an image every {args.image_every} lines, {args.runs} run(s)")
    results = []
    for run in range(1, args.runs + 1):
        r = run_once(args.lines, args.image_every, run)
        results.append(r)
        print(f"run {run}: end to end {r['end to end']:.2f} s, stage sum {r['stage sum']:.2f} s")
    print()
    print(f"| stage | median (s) | runs: {', '.join(str(i) for i in range(1, len(results) + 1))} |")
    print("| --- | ---: | --- |")
    keys = [*STAGES, "stage sum", "queued -> started (worker start)", "end to end"]
    for key in [*keys, "wall (with worker start)"]:
        values = [r[key] for r in results]
        runs = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {key} | {statistics.median(values):.3f} | {runs} |")
    last = results[-1]
    rate = args.lines / statistics.median(r["end to end"] for r in results)
    print()
    print(
        f"store: {last['requests']} requests, {last['products at the store']:,} products, "
        f"{last['bad signatures']} bad signatures; {last['images']} images attached; "
        f"{rate:,.0f} lines/s end to end"
    )


if __name__ == "__main__":
    main()
