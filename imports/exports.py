"""Exporting an organization's products: the selection, the streamed response, the export job.

Up to ``EXPORT_STREAM_MAX_ROWS`` rows stream straight to the client. Larger exports run as an
``export`` job (live progress like any job) that writes the file to storage for a download
link. Either way rows are read with a server-side cursor in chunks and written as they come,
so memory stays flat.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .models import ImportJob, JobKind, JobStatus, Organization, Priority, Product, ProductStatus
from .pipeline.export import FORMATS, LAYOUTS, csv_chunks, write_xlsx
from .pipeline.validation import FIELDS
from .progress import ProgressReporter
from .services import (
    InvalidUpload,
    commit_queued,
    job_enqueue,
    job_retry_attempt,
    require_queue,
)

CHUNK_ROWS = 2000
FILE_BLOCK = 256 * 1024
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def export_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The export's format, layout and filters from query parameters; 400 on a bad one."""
    fmt = (params.get("format") or "csv").strip().lower()
    if fmt not in FORMATS:
        raise InvalidUpload(f"Unknown format '{fmt}': use csv or xlsx.")
    layout = (params.get("preset") or "intake").strip().lower()
    if layout not in LAYOUTS:
        raise InvalidUpload(f"Unknown preset '{layout}': use one of {', '.join(LAYOUTS)}.")
    filters: dict[str, str] = {}
    if params.get("sku"):
        sku = str(params["sku"])
        if "\x00" in sku or len(sku) > 64:
            # PostgreSQL refuses a NUL in text; no SKU is longer than its column
            raise InvalidUpload("sku must be at most 64 characters, without NUL characters.")
        filters["sku"] = sku
    if params.get("status"):
        status = str(params["status"])
        if status not in ProductStatus.values:
            allowed = ", ".join(ProductStatus.values)
            raise InvalidUpload(f"Unknown status '{status}': use one of {allowed}.")
        filters["status"] = status
    return {"format": fmt, "layout": layout, "filters": filters}


def export_queryset(*, organization_id: int, filters: Mapping[str, str]) -> QuerySet[Product]:
    return Product.objects.filter(organization_id=organization_id, **filters).order_by("sku")


def product_chunks(qs: QuerySet[Product]) -> Iterator[list[tuple[Any, ...]]]:
    """The products as FIELDS tuples, ``CHUNK_ROWS`` at a time, through a server-side cursor."""
    rows = qs.values_list(*FIELDS).iterator(chunk_size=CHUNK_ROWS)
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        yield chunk


def export_filename(options: Mapping[str, Any], organization: Organization) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return f"{organization.slug}-products-{options['layout']}-{stamp}.{options['format']}"


def export_stream(*, organization: Organization, options: Mapping[str, Any]) -> Iterator[bytes]:
    """The export's bytes, piece by piece (call only for at most ``EXPORT_STREAM_MAX_ROWS``)."""
    qs = export_queryset(organization_id=organization.id, filters=options["filters"])
    layout = LAYOUTS[options["layout"]]
    if options["format"] == "csv":
        for text in csv_chunks(layout, product_chunks(qs)):
            yield text.encode("utf-8")
        return
    # openpyxl writes a whole package; an anonymous temp file is deleted once read
    with tempfile.TemporaryFile(suffix=".xlsx") as fh:
        write_xlsx(layout, product_chunks(qs), fh)  # type: ignore[arg-type]
        fh.seek(0)
        while block := fh.read(FILE_BLOCK):
            yield block


async def as_async(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Serve a sync iterator under ASGI one piece at a time (Django would otherwise read it
    whole into a list first). Every step runs in the request's one sync thread, which the
    server-side cursor needs."""
    step = sync_to_async(lambda: next(pieces, None), thread_sensitive=True)
    while (piece := await step()) is not None:
        yield piece


def in_blocks(pieces: Iterable[str], size: int = FILE_BLOCK) -> Iterator[bytes]:
    """Text pieces (a CSV's rows) as UTF-8 blocks of about ``size`` bytes: one write, and under
    ASGI one hop to the sync thread, per block rather than per row."""
    held: list[str] = []
    length = 0
    for piece in pieces:
        held.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(held).encode()
            held, length = [], 0
    if held:
        yield "".join(held).encode()


def streamed(request: object, pieces: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """``pieces`` as a streaming response's content for ``request`` (a DRF or Django one):
    under ASGI Django reads a sync iterator whole into a list before the first byte goes out,
    so there it is served one piece at a time (``as_async``)."""
    from django.core.handlers.asgi import ASGIRequest

    raw = getattr(request, "_request", request)
    return as_async(iter(pieces)) if isinstance(raw, ASGIRequest) else pieces


def handle_blocks(fh: Any) -> Iterator[bytes]:
    """An open binary file's blocks, closing it at the end (or when the client leaves)."""
    with fh:
        while block := fh.read(FILE_BLOCK):
            yield block


def file_blocks(path: Path) -> Iterator[bytes]:
    yield from handle_blocks(path.open("rb"))


def export_job_create(
    *, organization: Organization, user: Any, options: Mapping[str, Any], total: int
) -> ImportJob:
    """Queue an export job (for an export too large to stream in one request), or answer with
    the organization's export of the same file already queued or running: a GET that anyone in
    the organization may send (a link, a reload) must not start a catalogue-sized job each time.
    Redis down is a 503 before anything is stored (it was a 500 and a job left queued)."""
    require_queue(Priority.DEFAULT)

    def create() -> ImportJob:
        running = (
            ImportJob.objects.filter(
                organization=organization,
                kind=JobKind.EXPORT,
                status__in=(JobStatus.QUEUED, JobStatus.PROCESSING),
                cancel_requested_at__isnull=True,  # one being cancelled is no longer shared
                options__format=options["format"],
                options__layout=options["layout"],
                options__filters=options["filters"],
            )
            .order_by("-created_at")
            .first()
        )
        if running is not None:
            running.reused = True  # type: ignore[attr-defined]  (the page says so)
            return running
        job = ImportJob.objects.create(
            organization=organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            kind=JobKind.EXPORT,
            original_filename=export_filename(options, organization),
            options={**options, "expected_rows": total},
        )
        job_enqueue(job)
        return job

    return commit_queued(create)


def export_job_retry(*, job: ImportJob) -> ImportJob:
    """A failed or cancelled export runs again (``services.register_retry``): it reads no stored
    file, only its filters, so it writes the products as they are now."""
    return job_retry_attempt(job)


def run_export(job: ImportJob, reporter: ProgressReporter) -> None:
    """The export job's runner: write the file into storage, reporting progress by chunk."""
    options = job.options
    qs = export_queryset(organization_id=job.organization_id, filters=options["filters"])
    total = qs.count()
    reporter.stage("exporting", total_rows=total)
    layout = LAYOUTS[options["layout"]]
    # Each attempt writes its own file, and only the current attempt records it (below): an
    # attempt presumed lost may still be writing, removing or replacing its own.
    folder = f"jobs/{job.organization_id}/{job.id}"
    if job.attempt > 1:
        folder += f"/attempt-{job.attempt}"
    name = f"{folder}/{job.original_filename}"
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    cancelled = False

    def counted(chunks: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        nonlocal cancelled
        for chunk in chunks:
            yield chunk
            if reporter.advance(len(chunk)):
                cancelled = True
                return

    try:
        if options["format"] == "csv":
            with partial.open("w", encoding="utf-8", newline="") as fh:
                for text in csv_chunks(layout, counted(product_chunks(qs))):
                    fh.write(text)
        else:
            write_xlsx(layout, counted(product_chunks(qs)), partial)
        if cancelled:
            partial.unlink(missing_ok=True)
            reporter.cancelled()
            return
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    job.file.name = name
    job.file_size = path.stat().st_size
    ImportJob.objects.filter(pk=job.pk, attempt=job.attempt).update(
        file=name, file_size=job.file_size
    )
    reporter.finished()
