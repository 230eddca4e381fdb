"""Schedule the lost-worker check as an RQ job on RQ's scheduler (every ``JOB_CHECK_SECONDS``).

Not needed any more: every worker started with ``--with-scheduler`` runs the same check itself
(``imports.worker.IntakeWorker``), which also survives a Redis restart that would forget this
schedule. Kept for deployments that already call it; idempotent (a fixed RQ job id that
schedules its own next run).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from imports.jobs import schedule_lost_worker_check


class Command(BaseCommand):
    help = "Schedule the periodic lost-worker check on RQ's scheduler."

    def handle(self, *args: Any, **options: Any) -> None:
        schedule_lost_worker_check()
        self.stdout.write(
            "Scheduled the lost-worker check. (Not needed: workers started with "
            "--with-scheduler run it themselves.)"
        )
