"""Schedule Intake's periodic jobs (the lost-worker check, every 15 s) on RQ's scheduler.

Idempotent: the check has a fixed RQ job id and schedules its own next run. Run once when the
workers start (``make run`` does); workers must run with ``--with-scheduler``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from imports.jobs import schedule_lost_worker_check


class Command(BaseCommand):
    help = "Schedule the periodic lost-worker check on RQ's scheduler."

    def handle(self, *args: Any, **options: Any) -> None:
        schedule_lost_worker_check()
        self.stdout.write("Scheduled the lost-worker check (every 15 s).")
