from __future__ import annotations

from django.apps import AppConfig


class ImportsConfig(AppConfig):
    name = "imports"
    verbose_name = "Imports"

    def ready(self) -> None:
        # the stream core knows no app: tell it about jobs, organizations and the summary
        from . import topics
        from .exports import export_job_retry, run_export
        from .jobs import register_runner
        from .models import JobKind
        from .purchasing.apps import register as register_purchasing
        from .services import register_retry

        topics.register()
        register_runner(JobKind.EXPORT, run_export)
        register_retry(JobKind.EXPORT, export_job_retry)
        register_purchasing()
