"""The sync stage: the order's products to the organization's store, signed and idempotent.

Each request is a ``SyncBatch`` (at most ``PO_SYNC_BATCH_SIZE`` ≤ 250 products) whose body and
``Idempotency-Key`` are stored *before* the first attempt; every retry — in this run, after a
crash, or in a retried job — sends the same bytes with the same key and signature, and a
delivered batch is never sent again (Shopify's and Stripe's rule). Only network errors, 5xx and
429 are retried, with exponential backoff and full jitter, honouring ``Retry-After``. Every
attempt is a ``DeliveryAttempt`` row: status, latency, an excerpt of the answer.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F, Min, Sum
from django.utils import timezone

from ..models import Product
from . import outbound
from .models import (
    DeliveryAttempt,
    PurchaseOrder,
    PurchaseOrderLine,
    StageStatus,
    StoreConnection,
    SyncBatch,
    SyncBatchStatus,
)
from .outbound import OutboundRefused, check_url, redacted
from .workflow import StageContext, StageError, StageResult

EXCERPT_CHARS = 500
# what is read of a store's answer: its excerpt at most (a UTF-8 character is up to 4 bytes).
# The rest is never read, so a store answering with gigabytes costs a worker nothing.
EXCERPT_BYTES = 4 * EXCERPT_CHARS
SLEEP_SLICE = 5.0  # seconds between heartbeats while waiting to retry


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``, as the store verifies it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _money(value: object) -> str | None:
    return None if value is None else str(value)


def ensure_batches(order: PurchaseOrder) -> list[SyncBatch]:
    """The order's batches, created (bodies and keys) on the first call only."""
    existing = list(order.sync_batches.order_by("number"))
    if existing:
        return existing
    per_product = (
        PurchaseOrderLine.objects.filter(order=order, product__isnull=False)
        .values("product_id")
        .annotate(
            first_line=Min("line_number"),
            quantity=Sum("quantity"),
            unit_cost=Min("unit_cost"),
            image_url=Min("image_url"),
        )
        .order_by("first_line")
    )
    rows = list(per_product)
    products = Product.objects.in_bulk([r["product_id"] for r in rows])
    items = []
    for r in rows:
        p = products.get(r["product_id"])
        if p is None:
            continue
        items.append(
            {
                "id": p.id,
                "sku": p.sku,
                "name": p.name,
                "description": p.description,
                "price": _money(p.price),
                "currency": p.currency,
                "status": p.status,
                "brand": p.brand,
                "quantity_ordered": _money(r["quantity"]),
                "unit_cost": _money(r["unit_cost"]),
                "image_url": r["image_url"] or None,
            }
        )
    size = max(1, min(settings.PO_SYNC_BATCH_SIZE, 250))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    head = {
        "id": order.id,
        "po_number": order.po_number,
        "supplier": order.supplier_name,
        "currency": order.currency,
        "order_date": order.order_date.isoformat() if order.order_date else None,
    }
    batches = []
    for number, chunk in enumerate(chunks, start=1):
        body = {
            "purchase_order": head,
            "batch": {"number": number, "of": len(chunks)},
            "products": chunk,
        }
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        batches.append(SyncBatch(order=order, number=number, product_count=len(chunk), body=raw))
    with transaction.atomic():
        SyncBatch.objects.bulk_create(batches, ignore_conflicts=True)
    return list(order.sync_batches.order_by("number"))


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.replace(".", "", 1).isdecimal():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff(attempt: int) -> float:
    """Full jitter: a random wait up to base x 2^(attempt-1), capped."""
    cap = min(settings.PO_SYNC_BACKOFF_MAX, settings.PO_SYNC_BACKOFF_BASE * 2 ** (attempt - 1))
    return random.uniform(0, cap)


def _excerpt(response: httpx.Response) -> str:
    """The start of the answer's body, read until ``EXCERPT_BYTES`` or the request's deadline:
    the status already says what happened, and a store that drips its body keeps no worker."""
    data = bytearray()
    cut = ""
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= EXCERPT_BYTES:
                break
    except httpx.TimeoutException:
        cut = " (the rest came too slowly and was not read)"
    except httpx.HTTPError as exc:
        cut = f" (reading the rest failed: {type(exc).__name__})"
    text = bytes(data[:EXCERPT_BYTES]).decode(response.encoding or "utf-8", errors="replace")
    return text[:EXCERPT_CHARS] + cut


def deliver(
    client: httpx.Client,
    store: StoreConnection,
    batch: SyncBatch,
    *,
    total: int,
    beat: Callable[[], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Send ``batch`` until the store takes it; raise ``StageError`` when it refuses or the
    attempts run out. The key and body are the stored ones, whatever attempt this is."""
    body = bytes(batch.body)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": str(batch.idempotency_key),
        "X-Intake-Signature": sign(store.secret, body),
        "X-Intake-Batch": f"{batch.number}/{total}",
        "User-Agent": "Intake/1.0 (purchase-order sync)",
    }
    max_attempts = max(1, settings.PO_SYNC_MAX_ATTEMPTS)
    for attempt_in_run in range(1, max_attempts + 1):
        # counted before the request: a crash mid-request still shows that it was tried
        SyncBatch.objects.filter(pk=batch.pk).update(attempts=F("attempts") + 1)
        batch.attempts += 1
        log = DeliveryAttempt(batch=batch, order_id=batch.order_id, attempt=batch.attempts)
        log.url = redacted(store.url)[:500]
        started = time.monotonic()
        retry_after = None
        try:
            # each connect and read within PO_SYNC_TIMEOUT, and the whole request (a store
            # dripping its headers or its body a byte at a time) within PO_SYNC_MAX_SECONDS
            with (
                outbound.deadline(settings.PO_SYNC_MAX_SECONDS),
                client.stream("POST", store.url, content=body, headers=headers) as response,
            ):
                log.status_code = response.status_code
                log.response_excerpt = _excerpt(response)
        except httpx.TimeoutException as exc:
            log.outcome, log.error = "network_error", f"timed out ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            log.outcome, log.error = "network_error", f"{type(exc).__name__}: {exc}"[:500]
        else:
            if 200 <= response.status_code < 300:
                log.outcome = "delivered"
            elif response.status_code == 429 or response.status_code >= 500:
                log.outcome = "retry"
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
            else:
                log.outcome = "refused"
        log.latency_ms = int((time.monotonic() - started) * 1000)
        log.retry_after_seconds = retry_after
        with transaction.atomic():
            log.save()
            if log.outcome == "delivered":
                batch.status = SyncBatchStatus.DELIVERED
                batch.delivered_at = timezone.now()
                batch.save(update_fields=["status", "delivered_at"])
        beat()
        if log.outcome == "delivered":
            return
        what = f"HTTP {log.status_code}" if log.status_code else log.error
        if log.outcome == "refused":
            SyncBatch.objects.filter(pk=batch.pk).update(status=SyncBatchStatus.FAILED)
            raise StageError(
                f"The store refused request {batch.number} of {total} ({what}: "
                f"{log.response_excerpt[:200]!r}); fix the store or its settings, then retry."
            )
        if attempt_in_run == max_attempts:
            break
        wait = retry_after if retry_after is not None else backoff(attempt_in_run)
        if wait > settings.PO_SYNC_MAX_RETRY_AFTER:
            raise StageError(
                f"The store asked to wait {wait:.0f} s before request {batch.number} of {total} "
                f"(more than {settings.PO_SYNC_MAX_RETRY_AFTER:.0f} s); retry the order later."
            )
        while wait > 0:
            step = min(wait, SLEEP_SLICE)
            sleep(step)
            wait -= step
            beat()
    raise StageError(
        f"The store did not take request {batch.number} of {total} after {max_attempts} "
        f"attempts (last: {what}); retry the order later — nothing is sent twice."
    )


def stage_sync(ctx: StageContext) -> StageResult:
    order = ctx.order
    store = StoreConnection.objects.filter(organization_id=order.organization_id).first()
    if store is None or not store.url:
        return StageResult(
            status=StageStatus.SKIPPED, message="No store endpoint is set for the organization"
        )
    if not store.secret:
        raise StageError("The store endpoint has no signing secret; an admin must set one.")
    try:
        check_url(store.url, what="store URL")
    except OutboundRefused as exc:
        raise StageError(str(exc)) from exc
    batches = ensure_batches(order)
    if not batches:
        return StageResult(status=StageStatus.SKIPPED, message="No products to send")
    total = len(batches)
    products = sum(b.product_count for b in batches)
    already = sum(1 for b in batches if b.status == SyncBatchStatus.DELIVERED)
    timeout = httpx.Timeout(settings.PO_SYNC_TIMEOUT)
    with outbound.client(timeout=timeout, follow_redirects=False) as client:
        for batch in batches:
            if batch.status == SyncBatchStatus.DELIVERED:
                continue  # taken by the store in an earlier attempt: never sent twice
            deliver(client, store, batch, total=total, beat=ctx.beat)
            done = SyncBatch.objects.filter(order=order, status=SyncBatchStatus.DELIVERED).count()
            ctx.progress(done, total, f"{done} of {total} requests delivered")
    message = f"{products:,} products sent in {total:,} requests"
    if already:
        message += f" ({already} delivered before this attempt)"
    return StageResult(
        message=message,
        summary={"products": products, "requests": total, "resumed_after": already},
    )
