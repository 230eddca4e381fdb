"""Follow a job from the terminal with a live progress bar, through its SSE stream."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from imports.models import ImportJob, Membership, Role
from realtime.access import issue_stream_token
from realtime.events import job_topic
from realtime.follow import follow_job


class Command(BaseCommand):
    help = "Watch a job live (progress bar, stages, the result); resumes after disconnects."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("job_id")
        parser.add_argument("--url", default=os.environ.get("INTAKE_URL", "http://127.0.0.1:8000"))
        parser.add_argument(
            "--token",
            default=os.environ.get("INTAKE_TOKEN"),
            help="API token (else a short-lived stream token is issued for the job)",
        )

    def handle(self, *args: Any, job_id: str, url: str, token: str | None, **opts: Any) -> None:
        console = Console()
        headers: dict[str, str] = {}
        params: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Token {token}"
        else:
            job = ImportJob.objects.filter(pk=job_id).first()
            if job is None:
                raise CommandError(f"No job {job_id}.")
            member = (
                Membership.objects.filter(organization=job.organization)
                .order_by("-role", "created_at")
                .filter(role__in=[Role.ADMIN, Role.OPERATOR, Role.VIEWER])
                .first()
            )
            if member is None:
                raise CommandError("The job's organization has no members to watch as.")
            params["token"], _ = issue_stream_token(
                user_id=member.user_id,
                organization_id=job.organization_id,
                topics=[job_topic(job_id)],
            )
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("queued", total=None, rate="", rows="")
            final: dict[str, Any] = {}
            try:
                for event, envelope in follow_job(url, job_id, headers=headers, params=params):
                    job = envelope.get("job") or {}
                    final = job or final
                    rate = job.get("rows_per_second")
                    done, total = job.get("processed_rows") or 0, job.get("total_rows")
                    progress.update(
                        task,
                        description=job.get("stage") or job.get("status") or event,
                        total=job.get("total_rows") or None,
                        completed=done,
                        rate=f"{rate:,.0f} rows/s" if rate else "",
                        rows=f"{done:,}/{total:,} rows" if total else f"{done:,} rows",
                    )
                    if event == "job.stage":
                        progress.console.log(f"stage: {job.get('stage')}")
            except RuntimeError as exc:
                raise CommandError(str(exc))
        status = final.get("status", "unknown")
        colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(status, "white")
        console.print(
            f"[{colour}]{status}[/]: {final.get('created_rows', 0)} created, "
            f"{final.get('updated_rows', 0)} updated, {final.get('unchanged_rows', 0)} unchanged, "
            f"{final.get('error_count', 0)} row errors"
            + (f" — {final['error_message']}" if final.get("error_message") else "")
        )
