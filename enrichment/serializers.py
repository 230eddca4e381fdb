"""The API's shapes for components, projects, BOMs and lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rest_framework import serializers

from imports.serializers import job_snapshot

from . import selectors
from .models import Bom, BomLine, Component, Project


class PriceBreaksField(serializers.JSONField):
    """A component's price breaks, ``[[quantity, "price"], …]`` ascending by quantity: the
    catalogue keeps them as the file gave them (``catalogue._breaks_json``)."""

    def to_representation(self, value: Any) -> Any:
        return sorted(value or [], key=lambda b: int(b[0]))


class ComponentSerializer(serializers.ModelSerializer):
    price_breaks = PriceBreaksField(read_only=True)

    class Meta:
        model = Component
        fields = [
            "id",
            "manufacturer",
            "mpn",
            "description",
            "category",
            "package",
            "lifecycle",
            "datasheet_url",
            "stock",
            "moq",
            "unit_price",
            "currency",
            "price_breaks",
            "alternates",
            "mpn_norm_shared",
            "updated_at",
        ]
        read_only_fields = fields


class ProjectSerializer(serializers.ModelSerializer):
    # blank (or only spaces) is refused: the pattern says so in the schema too
    name = serializers.RegexField(r"\S", max_length=200)

    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_at"]
        read_only_fields = ["id", "created_at"]


class BomSerializer(serializers.ModelSerializer):
    project = ProjectSerializer(read_only=True)
    latest_job = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()

    class Meta:
        model = Bom
        fields = [
            "id",
            "name",
            "project",
            "original_filename",
            "line_count",
            "created_by",
            "created_at",
            "latest_job",
            "state",
        ]
        read_only_fields = fields

    def get_latest_job(self, bom: Bom) -> dict[str, Any] | None:
        job = bom.latest_job
        return None if job is None else {"id": str(job.id), "status": job.status}

    def get_state(self, bom: Bom) -> dict[str, Any]:
        return selectors.run_state(bom.latest_job)


def bom_detail(bom: Bom) -> dict[str, Any]:
    """A BOM with its latest run's state, counts by status and total cost."""
    from .jobs import bom_summary

    body = dict(BomSerializer(bom).data)
    summary = bom_summary(bom)
    body["counts"] = summary["counts"]
    body["total_cost"] = summary["total_cost"]
    body["currency"] = summary["currency"]
    body["total_cost_by_currency"] = summary["total_cost_by_currency"]
    body["lines_with_warnings"] = summary["lines_with_warnings"]
    body["job"] = job_snapshot(bom.latest_job) if bom.latest_job else None
    body["last_run"] = bom.summary.get("run")
    return body


def _money(value: Any) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def lines_payload(bom: Bom, lines: Sequence[BomLine]) -> list[dict[str, Any]]:
    """Lines as the API shows them; the candidates' components come in one query."""
    ids = {c["component_id"] for line in lines for c in line.candidates or []}
    ids |= {line.component_id for line in lines if line.component_id}
    briefs = selectors.components_by_id(organization_id=bom.organization_id, ids=ids)
    out = []
    for line in lines:
        out.append(
            {
                "id": line.id,
                "line_number": line.line_number,
                "references": line.references,
                "quantity": line.quantity,
                "mpn": line.mpn,
                "manufacturer": line.manufacturer,
                "description": line.description,
                "dnp": line.dnp,
                "match_status": line.match_status,
                "match_tier": line.match_tier,
                "confidence": line.confidence,
                "component": briefs.get(line.component_id) if line.component_id else None,
                "candidates": [
                    {"component": briefs[c["component_id"]], "score": c["score"]}
                    for c in line.candidates or []
                    if c["component_id"] in briefs
                ],
                "lifecycle": line.lifecycle,
                "stock": line.stock,
                "unit_price": _money(line.unit_price),
                "extended_price": _money(line.extended_price),
                "currency": line.currency,
                "datasheet_url": line.datasheet_url,
                "warnings": line.warnings,
                "notes": line.notes,
                "enriched_at": line.enriched_at.isoformat() if line.enriched_at else None,
                "catalogue_version": line.catalogue_version,
            }
        )
    return out
