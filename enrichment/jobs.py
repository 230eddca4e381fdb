"""The enrichment runner (plugged into ``imports.jobs.run_job``): match a BOM's lines in chunks,
store each chunk's results, and report ``enrichment.*`` events on ``bom:<id>``, ``job:<id>`` and
``org:<id>`` through the job's ``ProgressReporter``."""

from __future__ import annotations

import logging
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from imports.models import ImportJob
from imports.outages import OUTAGE_ERRORS
from imports.progress import JobFenced, ProgressReporter
from realtime.events import bom_topic

from . import selectors
from .enrich import LineInput, Matcher, relaxed_commits, run_chunks
from .models import UNRESOLVED, Bom, BomLine, MatchStatus

log = logging.getLogger(__name__)


def _state(job: ImportJob, counts: Counter, total: int) -> dict[str, Any]:
    done = job.processed_rows
    return {
        "percent_complete": 100 if total == 0 else min(100, int(done * 100 / total)),
        "total_items": total,
        "enriched_items": done,
        "failed_items": counts[MatchStatus.ERROR],
        "matched": counts[MatchStatus.MATCHED],
        "ambiguous": counts[MatchStatus.AMBIGUOUS],
        "not_found": counts[MatchStatus.NOT_FOUND],
        "skipped": counts[MatchStatus.SKIPPED],
    }


def run_bom_enrichment(job: ImportJob, reporter: ProgressReporter) -> None:
    """The ``bom_enrichment`` runner (in the ``loading`` stage from the start)."""
    bom_id = job.options.get("bom_id")
    bom = Bom.objects.filter(pk=bom_id, organization_id=job.organization_id).first()
    # ``enrichment.failed`` goes out on the BOM's topic with every failed or cancelled end of
    # the job, whichever path ends it (``signals.run_ended``)
    if bom is None:
        reporter.failed("The BOM was deleted before its enrichment ran.")
        return
    try:
        _run(job, reporter, bom, Counter())
    except (JobFenced, *OUTAGE_ERRORS):
        # not the run's fault: ``run_job`` resumes the job after its checkpoint (a database
        # outage, a statement or lock timeout), or leaves it to the newer attempt (fenced)
        raise
    except Exception as exc:
        log.exception("enrichment job %s crashed", job.id)
        message = (
            f"The enrichment stopped on an internal error ({type(exc).__name__}). Start it "
            "again; if it fails again, give the job id to an administrator."
        )
        reporter.failed(message)


def _run(job: ImportJob, reporter: ProgressReporter, bom: Bom, counts: Counter) -> None:
    topic = bom_topic(bom.id)
    # An attempt resumed after an earlier one stored some chunks (its worker was lost, or the
    # database went away) goes on after the last line stored in order (the checkpoint), with
    # that attempt's progress and counts: ``percent_complete`` never goes down. The counts and
    # the checkpoint were written by one statement (``_chunks``), so they agree.
    after = job.checkpoint_row or 0
    lines = _lines(bom, unresolved=job.options.get("only") == "unresolved", after=after)
    if after:
        counts.update(job.options.get("counts", {}))
    total = (job.processed_rows if after else 0) + len(lines)
    reporter.stage("matching", total_rows=total)
    reporter.announce(
        "enrichment.started", topics=[topic], bom_id=bom.id, state=_state(job, counts, total)
    )
    matcher = Matcher(
        organization_id=job.organization_id,
        aliases=selectors.alias_map(organization_id=job.organization_id),
    )
    version = selectors.catalogue_version(organization_id=job.organization_id)
    size = settings.ENRICHMENT_CHUNK_LINES
    started = time.perf_counter()
    with relaxed_commits():
        cancelled = _chunks(job, reporter, bom, matcher, lines, counts, size, version)
    if cancelled:
        reporter.cancelled()
        return
    elapsed = time.perf_counter() - started
    summary = bom_summary(bom)
    summary["run"] = {
        "lines": total,
        "seconds": round(elapsed, 4),
        "lines_per_tier": dict(matcher.lines),
        "examined_per_tier": dict(matcher.examined),
        "seconds_per_tier": {k: round(v, 4) for k, v in matcher.seconds.items()},
        # the run's own thread waiting on its helpers, beside the tiers (a stall shows here)
        "waited_seconds": {k: round(v, 4) for k, v in matcher.waited.items()},
    }
    bom.summary = summary
    bom.save(update_fields=["summary", "updated_at"])
    with transaction.atomic():
        reporter.finished()
        reporter.announce(
            "enrichment.completed",
            topics=[topic],
            terminal=True,
            bom_id=bom.id,
            state=_state(job, counts, total),
            summary=summary,
        )


# A line stored as an error at upload (its row could not be read) keeps its error and note;
# the database reads that note out, so no other line's JSON is parsed (the ORM's values_list
# parsed every line's notes: 85 ms of a 10,000-line run before matching began, measured).
_LINES = """
SELECT id, mpn, manufacturer, quantity, dnp,
       CASE WHEN match_status = %(error)s THEN coalesce(notes ->> 0, '') ELSE '' END,
       line_number
FROM enrichment_bomline
WHERE bom_id = %(bom)s AND line_number > %(after)s {only}
ORDER BY line_number
"""


def _lines(bom: Bom, *, unresolved: bool, after: int = 0) -> list[LineInput]:
    """The lines a run enriches, in order: all, or the unresolved ones; those after line
    number ``after`` (a resumed attempt's checkpoint)."""
    only = "AND match_status = ANY(%(unresolved)s)" if unresolved else ""
    with connection.cursor() as wrapper:
        cur = wrapper.cursor
        cur.execute(
            _LINES.format(only=only),
            {
                "bom": bom.id,
                "after": after,
                "error": MatchStatus.ERROR.value,
                "unresolved": [s.value for s in UNRESOLVED],
            },
        )
        return list(map(LineInput._make, cur.fetchall()))


def _chunks(
    job: ImportJob,
    reporter: ProgressReporter,
    bom: Bom,
    matcher: Matcher,
    lines: list[LineInput],
    counts: Counter,
    size: int,
    version: int,
) -> bool:
    """Match and store every chunk, reporting progress; True if the run was cancelled."""
    topic = bom_topic(bom.id)
    total = job.total_rows
    last_progress = 0.0
    # a line resolved by an operator after the run was asked for keeps that resolution
    for results in run_chunks(matcher, lines, size=size, version=version, since=job.created_at):
        counts.update(r.decision.status for r in results)
        job.options = {**job.options, "counts": dict(counts)}
        # the counts so far go with the progress and the checkpoint (chunks are yielded in
        # line order), in one fenced write: a superseded attempt must not overwrite them
        cancel = reporter.advance(
            len(results), checkpoint_row=results[-1].line.line_number, with_options=True
        )
        now = time.monotonic()
        if now - last_progress >= reporter.min_interval and job.processed_rows < total:
            last_progress = now
            reporter.announce(
                "enrichment.progress",
                topics=[topic],
                bom_id=bom.id,
                state=_state(job, counts, total),
            )
        if cancel:
            return True
    return False


def bom_summary(bom: Bom) -> dict[str, Any]:
    """Counts by status, total cost per currency and lines with warnings, over the whole BOM."""
    # one pass over the lines (three queries took 24 ms of a 10,000-line run, measured)
    groups = (
        BomLine.objects.filter(bom=bom)
        .values_list("match_status", "currency")
        .annotate(
            n=Count("id"),
            cost=Sum("extended_price", filter=Q(match_status=MatchStatus.MATCHED, dnp=False)),
            warned=Count("id", filter=~Q(warnings=[])),
        )
        .order_by()
    )
    counts = dict.fromkeys(selectors.COUNTED, 0)
    by_currency: dict[str, Decimal] = {}
    warned = 0
    for status, currency, n, cost, with_warnings in groups:
        counts[status] = counts.get(status, 0) + n
        warned += with_warnings
        if cost is not None:  # matched, populated lines with a price
            by_currency[currency or ""] = by_currency.get(currency or "", Decimal(0)) + cost
    total = sum(by_currency.values(), Decimal(0)) if len(by_currency) == 1 else None
    return {
        "counts": counts,
        "total_cost": None if total is None else str(total.quantize(Decimal("0.01"))),
        "currency": next(iter(by_currency)) if len(by_currency) == 1 else None,
        "total_cost_by_currency": {
            k: str(v.quantize(Decimal("0.01"))) for k, v in by_currency.items()
        },
        "lines_with_warnings": warned,
    }
