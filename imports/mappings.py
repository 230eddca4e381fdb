"""Column mappings for an organization: proposals, the remembered mappings, plans and previews.

The pure machinery is in ``pipeline/mapping.py`` (proposals), ``pipeline/presets.py`` (store
presets) and ``pipeline/shaping.py`` (rows under a plan); this module adds what only the
database knows: the mapping a person of the organization confirmed for the same header set.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction

from .models import ColumnMapping, Organization, Product
from .pipeline.mapping import (
    PRODUCT_SPEC,
    FieldSpec,
    MappingError,
    Proposal,
    header_key,
    propose,
)
from .pipeline.presets import PRESETS, detect
from .pipeline.readers import FileReadError, open_source
from .pipeline.shaping import ImportPlan
from .pipeline.validation import FIELDS, HeaderError
from .services import InvalidUpload

PREVIEW_ROWS = 20


class MappingRequired(InvalidUpload):
    """The required fields cannot be mapped with confidence: the answer carries the proposal
    so that a client can send ``mapping`` back."""

    def __init__(self, message: str, proposal: Proposal) -> None:
        super().__init__(message)
        self.payload = {
            "proposal": proposal.as_dict(),
            "missing": proposal.missing + proposal.unsure,
        }


def _same(stored: Any, text: str) -> bool:
    """Whether a file's validated ``text`` is the value stored, compared as the import's
    writer compares the typed columns: a price of ``10`` is the stored ``10.00``, a quantity
    of ``007`` is ``7``."""
    if isinstance(stored, (Decimal, int)) and not isinstance(stored, bool):
        try:
            return stored == type(stored)(text.strip() or 0)
        except (ArithmeticError, ValueError):
            return False
    return str(stored) == text


def preset_check(name: str | None) -> str | None:
    if name in (None, ""):
        return None
    name = str(name).strip().lower()
    if name not in PRESETS:
        raise InvalidUpload(f"Unknown preset '{name}': use one of {', '.join(PRESETS)}.")
    return name


def mapping_remembered(
    *, organization: Organization, header: list[str], spec: FieldSpec = PRODUCT_SPEC
) -> ColumnMapping | None:
    return ColumnMapping.objects.filter(
        organization=organization, spec=spec.name, header_key=header_key(header)
    ).first()


def mapping_propose(
    *,
    organization: Organization,
    header: list[str],
    preset: str | None = None,
    spec: FieldSpec = PRODUCT_SPEC,
    detect_preset: bool = True,
) -> Proposal:
    """The proposal for ``header``: remembered mapping, else the preset asked for or the one
    recognised by its headers (unless ``detect_preset`` is off: a person chose no preset),
    else aliases and near names."""
    remembered = mapping_remembered(organization=organization, header=header, spec=spec)
    if (
        remembered is not None
        and detect_preset
        and (preset is None or preset == (remembered.preset or None))
    ):
        return propose(
            header, spec, remembered=remembered.mapping, preset=remembered.preset or None
        )
    chosen = PRESETS[preset] if preset else detect(header) if detect_preset else None
    if chosen is None:
        return propose(header, spec)
    return propose(header, spec, preset_columns=chosen.columns_for(header), preset=chosen.name)


def mapping_remember(
    *,
    organization: Organization,
    user: Any,
    header: list[str],
    mapping: Mapping[str, str | None],
    preset: str | None,
    spec: FieldSpec = PRODUCT_SPEC,
) -> ColumnMapping:
    """Remember a mapping a person confirmed for this organization and header set."""
    with transaction.atomic():
        remembered, _ = ColumnMapping.objects.update_or_create(
            organization=organization,
            spec=spec.name,
            header_key=header_key(header),
            defaults={
                "header": list(header),
                "mapping": {str(k): v for k, v in mapping.items()},
                "preset": preset or "",
                "updated_by": user if getattr(user, "is_authenticated", False) else None,
            },
        )
    return remembered


def import_plan_decide(
    *,
    organization: Organization,
    header: list[str],
    mapping: Mapping[str, str | None] | None,
    preset: str | None,
) -> tuple[ImportPlan, Proposal]:
    """The plan a job runs with. A client's ``mapping`` is checked against the file; without
    one, the proposal is used when it is confident, otherwise ``MappingRequired``."""
    preset = preset_check(preset)
    proposal = mapping_propose(organization=organization, header=header, preset=preset)
    if mapping is not None:
        plan = ImportPlan(mapping=dict(mapping), preset=preset)
        try:
            plan.header_map(header)
        except MappingError as exc:
            raise MappingRequired(str(exc), proposal) from exc
        return plan, proposal
    if not proposal.confident:
        raise MappingRequired(mapping_problem(proposal), proposal)
    return ImportPlan(mapping=proposal.mapping, preset=proposal.preset), proposal


def mapping_problem(proposal: Proposal) -> str:
    """Why ``proposal`` cannot be used as it is, for a person."""
    header = proposal.header
    found = ", ".join(h for h in header if h.strip()) or "nothing"
    if not any(c.field for c in proposal.choices):
        return (
            "No recognizable header row: expected columns such as sku, name, price "
            f"(found: {found}). Send 'mapping' ({{column: field or null}}) to say which "
            "column is which."
        )
    parts = []
    if proposal.missing:
        names = ", ".join(f"'{m}'" for m in proposal.missing)
        one = len(proposal.missing) == 1
        parts.append(f"{'Column' if one else 'Columns'} {names} {'is' if one else 'are'} missing")
    if proposal.unsure:
        guesses = [
            f"'{c.column}' for '{c.field}'" for c in proposal.choices if c.field in proposal.unsure
        ]
        parts.append(f"only a guess of {', '.join(guesses)}")
    return (
        f"Cannot map the required columns with confidence: {'; '.join(parts)} (found: {found}). "
        "Send 'mapping' ({column: field or null}) to say which column is which."
    )


def file_header(path: Path, filename: str) -> list[str]:
    try:
        return open_source(path, filename).header
    except FileReadError as exc:
        raise InvalidUpload(str(exc)) from exc


def import_preview(
    *,
    organization: Organization,
    path: Path,
    filename: str,
    mapping: Mapping[str, str | None] | None = None,
    preset: str | None = None,
    rows: int = PREVIEW_ROWS,
    detect_preset: bool = True,
) -> dict[str, Any]:
    """The proposal and the first ``rows`` rows as they would be imported: their fields, the
    outcome (create, update, unchanged, skip, error) and the row error. Creates nothing."""
    try:
        source = open_source(path, filename)
    except FileReadError as exc:
        raise InvalidUpload(str(exc)) from exc
    header = source.header
    preset = preset_check(preset)
    proposal = mapping_propose(
        organization=organization, header=header, preset=preset, detect_preset=detect_preset
    )
    used = dict(mapping) if mapping is not None else proposal.mapping
    plan = ImportPlan(mapping=used, preset=preset if mapping is not None else proposal.preset)
    result: dict[str, Any] = {
        "header": header,
        "proposal": proposal.as_dict(),
        "mapping": used,
        "preset": plan.preset,
        "fields": list(FIELDS),
        "required": list(PRODUCT_SPEC.required),
        "presets": {p.name: p.label for p in PRESETS.values()},
        "preset_notes": list(PRESETS[plan.preset].notes) if plan.preset else [],
        "mapping_error": "",
        "rows": [],
    }
    numbers, values = [], []
    try:
        for number, cells in source.head(rows):
            numbers.append(number)
            values.append(list(cells))
    except FileReadError as exc:
        result["mapping_error"] = str(exc)
    try:
        checker = plan.checker(header, rows)
    except (MappingError, HeaderError) as exc:
        # the rows are still shown, each refused, so the person sees their data while mapping
        result["mapping_error"] = str(exc)
        result["rows"] = [
            {
                "row": number,
                "values": cells,
                "fields": {},
                "outcome": "error",
                "skipped": "",
                "error": f"Row {number}: not importable until every required field has a column",
            }
            for number, cells in zip(numbers, values, strict=True)
        ]
        return result
    shaped = checker.preview(numbers, values)
    # what an import compares and writes on an existing product: the mapped fields (every
    # field with a preset), as ``ProductWriter`` does
    compared = (
        FIELDS if plan.preset else [f for f in FIELDS if f in plan.header_map(header).columns]
    )
    skus = [r.fields["sku"] for r in shaped if r.fields]
    existing = {
        p["sku"]: p
        for p in Product.objects.filter(organization=organization, sku__in=skus).values(*FIELDS)
    }
    for row in shaped:
        outcome = "error" if row.error else "skip" if row.skipped else "create"
        if row.fields and row.fields["sku"] in existing:
            stored = existing[row.fields["sku"]]
            same = all(_same(stored[f], row.fields[f]) for f in compared)
            outcome = "unchanged" if same else "update"
        result["rows"].append(
            {
                "row": row.number,
                "values": row.values,
                "fields": row.fields,
                "outcome": outcome,
                "skipped": row.skipped,
                "error": row.error,
            }
        )
    return result
