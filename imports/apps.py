from __future__ import annotations

from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "imports"
    verbose_name = "Imports"

    def ready(self) -> None:
        from .exports import run_export
        from .jobs import register_runner
        from .models import JobKind

        register_runner(JobKind.EXPORT, run_export)
