"""The image_attachment stage: fetch each line's image URL once, keep it with a thumbnail.

Limits: http(s) only, the outbound host rules (outbound.py), a timeout per read and
``PO_IMAGE_MAX_SECONDS`` for a whole fetch (a server that sends a byte a second keeps no
worker), at most ``PO_IMAGE_MAX_BYTES``, JPEG/PNG/GIF/WebP that Pillow can open, at most three
redirects (each checked). ``PO_IMAGE_CONCURRENCY`` fetches run at once, but only
``PO_IMAGE_DECODES`` decodes: a 40-megapixel image is 160 MB decoded. A bad image is a warning on
its line, never the stage's failure. Results are stored as they come, so a line whose image is
stored is not fetched again when the stage runs again, after a crash too.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction

from . import outbound
from .models import PurchaseOrderLine, StageStatus
from .outbound import OutboundRefused, check_url
from .workflow import StageContext, StageResult

ALLOWED_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
PILLOW_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
THUMBNAIL_SIZE = (200, 200)
MAX_REDIRECTS = 3
MAX_PIXELS = 40_000_000
SAVE_EVERY = 50  # images whose results are stored together


class ImageRefused(Exception):
    """This image cannot be attached; the message is for the line's warnings."""


@dataclass
class FetchedImage:
    url: str
    image_name: str = ""
    thumbnail_name: str = ""
    warning: str = ""


def _download(client: httpx.Client, url: str) -> tuple[bytes, str]:
    limit = settings.PO_IMAGE_MAX_BYTES
    deadline = time.monotonic() + settings.PO_IMAGE_MAX_SECONDS
    too_slow = f"the image took more than {settings.PO_IMAGE_MAX_SECONDS:g} s to fetch"
    for _ in range(MAX_REDIRECTS + 1):
        if time.monotonic() > deadline:
            raise ImageRefused(too_slow)
        try:
            check_url(url, what="image URL")
        except OutboundRefused as exc:
            raise ImageRefused(str(exc)) from exc
        try:
            # the deadline bounds each connect, handshake and read too: a server dripping its
            # headers a byte at a time is cut off as one dripping its body
            with (
                outbound.deadline(max(0.0, deadline - time.monotonic())),
                client.stream("GET", url) as response,
            ):
                if response.is_redirect and response.headers.get("location"):
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise ImageRefused(f"the image URL answered HTTP {response.status_code}")
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in ALLOWED_TYPES:
                    raise ImageRefused(
                        f"the image URL sent '{ctype or 'no type'}', not JPEG, PNG, GIF or WebP"
                    )
                declared = response.headers.get("content-length", "")
                if declared.isascii() and declared.isdecimal() and int(declared) > limit:
                    raise ImageRefused(f"the image is larger than {limit // 1024:,} KB")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise ImageRefused(f"the image is larger than {limit // 1024:,} KB")
                return bytes(data), ctype
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline:
                raise ImageRefused(too_slow) from exc
            raise ImageRefused("the image URL did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ImageRefused(f"the image could not be fetched ({type(exc).__name__})") from exc
    raise ImageRefused(f"the image URL redirected more than {MAX_REDIRECTS} times")


def _thumbnail(data: bytes, decoding: threading.Semaphore) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img, decoding:
            if img.format not in PILLOW_FORMATS:
                raise ImageRefused(f"the file is {img.format}, not JPEG, PNG, GIF or WebP")
            if img.width * img.height > MAX_PIXELS:
                raise ImageRefused(f"the image is too large ({img.width}x{img.height} pixels)")
            img.load()
            mode = "RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB"
            # no full-size copy when the image is already in the mode (most are)
            thumb = img if img.mode == mode else img.convert(mode)
            thumb.thumbnail(THUMBNAIL_SIZE)
            out = io.BytesIO()
            thumb.save(out, format="PNG", optimize=True)
            return out.getvalue()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise ImageRefused("the file is not an image that can be read") from exc


def fetch_image(
    client: httpx.Client, url: str, folder: str, decoding: threading.Semaphore
) -> FetchedImage:
    """Fetch, check and store one image and its thumbnail; never raises."""
    result = FetchedImage(url)
    try:
        data, ctype = _download(client, url)
        thumb = _thumbnail(data, decoding)
    except ImageRefused as exc:
        result.warning = f"Image not attached: {exc}."
        return result
    stem = hashlib.sha256(url.encode()).hexdigest()[:20]
    result.image_name = default_storage.save(
        f"{folder}/{stem}.{ALLOWED_TYPES[ctype]}", ContentFile(data)
    )
    result.thumbnail_name = default_storage.save(f"{folder}/{stem}-thumb.png", ContentFile(thumb))
    return result


def _store(fetched: list[FetchedImage], lines_of: dict[str, list[int]]) -> None:
    """The results on the lines that show each image and have none stored yet, by primary key:
    one statement a thousand lines, linear however many lines share an image (Django's
    bulk_update is a CASE over every line, in the square of the lines; a join on the URL
    read the order's lines once per batch of images, in lines x images)."""
    rows: list[tuple[object, ...]] = []
    for f in fetched:
        warnings = json.dumps([f.warning] if f.warning else [])
        rows += [(line_id, f.image_name, f.thumbnail_name, warnings) for line_id in lines_of[f.url]]
    table = connection.ops.quote_name(PurchaseOrderLine._meta.db_table)
    with connection.cursor() as cur:
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            values = ", ".join(["(%s::bigint, %s, %s, %s::jsonb)"] * len(chunk))
            cur.execute(
                f"UPDATE {table} AS line "
                "SET image = v.image, thumbnail = v.thumbnail, warnings = v.warnings "
                f"FROM (VALUES {values}) AS v(id, image, thumbnail, warnings) "
                "WHERE line.id = v.id AND line.image = ''",
                [value for row in chunk for value in row],
            )


def stage_image_attachment(ctx: StageContext) -> StageResult:
    order = ctx.order
    with_urls = PurchaseOrderLine.objects.filter(order=order).exclude(image_url="")
    if not with_urls.exists():
        return StageResult(status=StageStatus.SKIPPED, message="No image URLs on the lines")
    # each image once, in the lines' order, with the lines that show it
    lines_of: dict[str, list[int]] = {}
    for line_id, url in (
        with_urls.filter(image="").order_by("line_number").values_list("id", "image_url")
    ):
        lines_of.setdefault(url, []).append(line_id)
    urls = list(lines_of)
    folder = f"purchase-orders/{order.organization_id}/{order.id}/images"
    results: dict[str, FetchedImage] = {}
    unsaved: list[FetchedImage] = []

    def save() -> None:
        # fenced: a superseded attempt stores no results over the newer one's
        with transaction.atomic():
            ctx.reporter.hold()
            _store(unsaved, lines_of)
        unsaved.clear()

    timeout = httpx.Timeout(settings.PO_IMAGE_TIMEOUT)
    headers = {"User-Agent": "Intake/1.0 (purchase-order images)"}
    decoding = threading.BoundedSemaphore(max(1, settings.PO_IMAGE_DECODES))
    with outbound.client(timeout=timeout, follow_redirects=False, headers=headers) as client:
        pool = ThreadPoolExecutor(max_workers=max(1, settings.PO_IMAGE_CONCURRENCY))
        try:
            futures = [pool.submit(fetch_image, client, url, folder, decoding) for url in urls]
            for done, future in enumerate(futures, start=1):
                fetched = future.result()
                results[fetched.url] = fetched
                unsaved.append(fetched)
                if len(unsaved) >= SAVE_EVERY:
                    save()
                ctx.progress(done, len(urls), f"{done:,} of {len(urls):,} images")
            save()
        finally:
            # a stop (a fenced attempt, an outage, a crash) leaves the queued fetches
            # unstarted, and the running ones finish before their client closes
            pool.shutdown(wait=True, cancel_futures=True)
    attached = sum(1 for r in results.values() if r.image_name)
    failed = len(results) - attached
    message = f"{attached:,} images attached"
    if failed:
        message += f", {failed:,} not (see the lines' warnings)"
    return StageResult(
        message=message,
        summary={"urls": len(urls), "attached": attached, "failed": failed},
    )
