"""Fixing failed rows: a job's corrected rows imported again as a new job linked to it.

The failed rows' original cells are stored with their errors (``ImportRowError.values``); a
person corrects them in the job page's table or sends them through the API. The new job reads
a small CSV of the original header and the corrected rows, with the original job's mapping,
preset and mode, and records which original row each of its rows stands for, so the original
job can tell which of its rows are fixed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile

from .models import ImportJob, ImportRowError, JobStatus
from .pipeline.text import valid_text
from .pipeline.validation import FIELDS
from .services import InvalidState, InvalidUpload, commit_queued, job_enqueue, require_queue

# the fix file's first data row is row 2 (the header is row 1)
_FIRST_ROW = 2


def job_header(job: ImportJob) -> list[str]:
    """The original file's header (kept in the options since mapping; read from the file for
    older jobs)."""
    header = job.options.get("columns")
    if header:
        return list(header)
    if not job.file:
        raise InvalidState("The job's file is no longer stored, so its columns are unknown.")
    from .mappings import file_header

    return file_header(Path(job.file.path), job.original_filename)


# errors the database writer gives keep the product's values in FIELDS order, not the file's
# cells (the writer never sees the file's rows)
_WRITER_MESSAGES = ("' already exists", "' does not exist (update mode", "the database refused")


def error_cells(job: ImportJob, error: ImportRowError, header: list[str]) -> list[str]:
    """The failed row's cells in the file's column order, as the fix table shows them.

    A writer's error holds the row's values by field; they are put back under the columns the
    job's mapping read them from (the other columns stay empty: nothing imports them)."""
    values = [str(v) for v in error.values]
    mapping = job.options.get("mapping") or {}
    if len(values) == len(FIELDS) and mapping and any(m in error.message for m in _WRITER_MESSAGES):
        positions: dict[str, int] = {}
        for index, column in enumerate(header):
            field = mapping.get(column.strip())
            if field:
                positions.setdefault(field, index)
        cells = [""] * len(header)
        for field, value in zip(FIELDS, values, strict=True):
            if field in positions:
                cells[positions[field]] = value
        return cells
    return values


def _cells(number: int, values: Any, header: list[str]) -> list[str]:
    if isinstance(values, dict):
        positions = {h.strip(): i for i, h in reversed(list(enumerate(header)))}
        cells = [""] * len(header)
        for column, value in values.items():
            if str(column).strip() not in positions:
                raise InvalidUpload(f"Row {number}: column '{column}' is not in the file.")
            cells[positions[str(column).strip()]] = _text(number, value)
        return cells
    if isinstance(values, list):
        return [_text(number, v) for v in values]
    raise InvalidUpload(f"Row {number}: values must be a list of cells or {{column: value}}.")


def _text(number: int, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        raise InvalidUpload(f"Row {number}: a cell must be text or a number.")
    return str(value)


def import_fix_create(*, job: ImportJob, user: Any, rows: dict[int, Any]) -> ImportJob:
    """Start a job of ``rows`` ({original row number: corrected cells}) of ``job``'s failed
    rows, with ``job``'s mapping, preset and mode. Each row must have failed in ``job``."""
    if not job.is_terminal:
        raise InvalidState(f"The job is {job.status}; fix its rows once it has ended.")
    header = job_header(job)
    failed = set(
        ImportRowError.objects.filter(job=job, row_number__in=list(rows)).values_list(
            "row_number", flat=True
        )
    )
    stray = sorted(set(rows) - failed)
    if stray:
        listed = ", ".join(map(str, stray[:10])) + (" …" if len(stray) > 10 else "")
        raise InvalidUpload(f"Rows {listed} did not fail in this job, so there is nothing to fix.")
    numbers = sorted(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for number in numbers:
        cells = _cells(number, rows[number], header)
        if not any(c.strip() for c in cells):
            raise InvalidUpload(f"Row {number}: every cell is empty.")
        writer.writerow(cells)
    stem = Path(job.original_filename or "import").stem
    filename = f"{stem}-fixes.csv"[:200]
    text = buffer.getvalue()
    if not valid_text(text):
        # a lone surrogate failed the UTF-8 encoding below (a 500), and a NUL made the fix
        # job's file "binary", failing the whole job
        raise InvalidUpload(
            "A corrected cell holds a NUL character or a lone surrogate, which are not text: "
            "send it again without."
        )
    content = text.encode("utf-8")
    options = {
        **{k: v for k, v in job.options.items() if k != "fix_rows"},
        "fix_rows": numbers,
    }
    require_queue(job.priority)  # Redis down: a 503 before anything is stored, not a 500

    def create() -> ImportJob:
        fix_job = ImportJob(
            organization=job.organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            kind=job.kind,
            original_filename=filename,
            file_size=len(content),
            priority=job.priority,
            options=options,
            fixes=job,
        )
        fix_job.file.save(filename, ContentFile(content), save=False)
        fix_job.save()
        job_enqueue(fix_job)
        return fix_job

    return commit_queued(create)


def fixed_rows(job: ImportJob) -> set[int]:
    """The rows of ``job`` that a completed fix job (not a dry run) imported."""
    fixed: set[int] = set()
    for fix_job in job.fix_jobs.filter(status=JobStatus.COMPLETED):
        if fix_job.dry_run:
            continue
        originals = fix_job.options.get("fix_rows") or []
        still_failed = set(fix_job.row_errors.values_list("row_number", flat=True))
        fixed.update(
            original
            for offset, original in enumerate(originals)
            if offset + _FIRST_ROW not in still_failed
        )
    return fixed
