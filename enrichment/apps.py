from __future__ import annotations

from django.apps import AppConfig


class EnrichmentConfig(AppConfig):
    name = "enrichment"
    verbose_name = "BOM enrichment"

    def ready(self) -> None:
        from imports.jobs import register_runner
        from imports.models import JobKind
        from imports.services import register_retry
        from realtime import topics

        from . import signals
        from .catalogue_import import run_component_import
        from .jobs import run_bom_enrichment
        from .services import enrichment_retry
        from .topics import TERMINAL_EVENTS, bom_run_ended, bom_snapshot, bom_visible

        register_runner(JobKind.COMPONENT_IMPORT, run_component_import, first_stage="reading")
        register_runner(JobKind.BOM_ENRICHMENT, run_bom_enrichment, first_stage="loading")
        register_retry(JobKind.BOM_ENRICHMENT, enrichment_retry)
        topics.register(
            "bom",
            authorize=bom_visible,
            snapshot=bom_snapshot,
            ended=bom_run_ended,
            terminal_events=TERMINAL_EVENTS,
        )
        signals.connect()
