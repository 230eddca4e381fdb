"""Actions that change the catalogue, BOMs and their lines: import components, upload a BOM,
start its enrichment, resolve a line, create a project.

Jobs go through ``imports.services.job_enqueue`` (inside the transaction that made them; django-rq
enqueues on commit) and run in ``imports.jobs.run_job`` like every other kind. As for product
imports, a queue that does not answer is a 503 before anything is stored, and one that fails
as the job is queued leaves the job failed with a message, not ``queued`` for good
(``require_queue``, ``commit_queued``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from imports.models import ImportJob, JobKind, Organization
from imports.pipeline.readers import FileReadError, open_source
from imports.pipeline.validation import HeaderError, map_header, quoted
from imports.services import (
    ALLOWED_SUFFIXES,
    InvalidState,
    InvalidUpload,
    ServiceError,
    UploadTooLarge,
    commit_queued,
    job_enqueue,
    job_retry_attempt,
    require_queue,
)
from imports.uploads import upload_name

from . import matching, selectors
from .bom_file import map_bom_header, read_bom_lines
from .catalogue import ALIASES as COMPONENT_ALIASES
from .catalogue import REQUIRED as COMPONENT_REQUIRED
from .models import (
    Bom,
    BomLine,
    Component,
    LearnedMatch,
    ManufacturerAlias,
    MatchStatus,
    MatchTier,
    Project,
)

QUEUE_FOR_PRIORITY = {
    **dict.fromkeys(range(8, 11), "high"),
    **dict.fromkeys(range(4, 8), "default"),
}
QUEUE_FOR_PRIORITY.update(dict.fromkeys(range(1, 4), "low"))


class RunInProgress(ServiceError):
    status_code = 409

    def __init__(self, job: ImportJob) -> None:
        super().__init__(
            f"An enrichment of this BOM is already {job.status} (job {job.id}); "
            f"wait for it to end or cancel it (POST /api/v1/jobs/{job.id}/cancel)."
        )
        self.job = job


def _no_nul(**texts: str) -> None:
    """PostgreSQL's text cannot hold a NUL character: refuse it with the field's name."""
    for field, text in texts.items():
        if "\x00" in text:
            raise InvalidUpload(
                f"The {field} holds a NUL character, which cannot be stored: remove it and "
                "try again."
            )


def _check_file(upload: UploadedFile) -> str:
    name = upload_name(upload, "upload.csv")
    if upload.size is not None and upload.size > settings.IMPORT_MAX_UPLOAD_BYTES:
        limit = settings.IMPORT_MAX_UPLOAD_BYTES / (1024 * 1024)
        raise UploadTooLarge(f"File is larger than the {limit:g} MB upload limit.")
    if Path(name).suffix.lower() not in ALLOWED_SUFFIXES:
        raise InvalidUpload(
            f"'{name}' is not a CSV or XLSX file: upload a .csv, .tsv, .txt or .xlsx file."
        )
    if not upload.size:
        raise InvalidUpload("File is empty.")
    return name


# ---------------------------------------------------------------------- catalogue


def component_import_create(
    *, organization: Organization, user: Any, upload: UploadedFile, priority: str = "default"
) -> ImportJob:
    """Store a component file and queue its ``component_import`` job; a file whose header
    names no manufacturer and MPN column is refused now, not in the worker."""
    name = _check_file(upload)
    if priority not in ("high", "default", "low"):
        raise InvalidUpload(f"Unknown priority '{priority}': use one of high, default, low.")
    require_queue(priority)

    def create() -> ImportJob:
        job = ImportJob(
            organization=organization,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            kind=JobKind.COMPONENT_IMPORT,
            original_filename=name,
            file_size=upload.size or 0,
            priority=priority,
            options={"mode": "upsert"},
        )
        job.file.save(name, upload, save=False)
        try:
            source = open_source(Path(job.file.path), name)
            map_header(source.header, aliases=COMPONENT_ALIASES, required=COMPONENT_REQUIRED)
        except (FileReadError, HeaderError) as exc:
            job.file.delete(save=False)
            raise InvalidUpload(str(exc))
        job.save()
        job_enqueue(job)
        return job

    return commit_queued(create)


# ---------------------------------------------------------------------- projects and BOMs


def project_create(
    *, organization: Organization, user: Any, name: str, description: str = ""
) -> Project:
    name = name.strip()
    if not name:
        raise InvalidUpload("A project needs a name.")
    _no_nul(name=name, description=description)
    try:
        with transaction.atomic():
            return Project.objects.create(
                organization=organization,
                name=name[:200],
                description=description,
                created_by=user if getattr(user, "is_authenticated", False) else None,
            )
    except IntegrityError:
        raise InvalidState(f"A project named '{name}' already exists.")


def bom_create(
    *,
    organization: Organization,
    user: Any,
    upload: UploadedFile,
    name: str = "",
    project: Project | None = None,
) -> tuple[Bom, list[str]]:
    """Store a BOM file and its lines; returns the BOM and the row problems (those lines are
    stored with status ``error`` and the problem as a note, so nothing in the file is lost)."""
    filename = _check_file(upload)
    _no_nul(name=name, filename=filename)
    with transaction.atomic():
        bom = Bom(
            organization=organization,
            project=project,
            name=(name.strip() or Path(filename).stem)[:200],
            original_filename=filename,
            created_by=user if getattr(user, "is_authenticated", False) else None,
        )
        bom.source_file.save(filename, upload, save=False)
        try:
            source = open_source(Path(bom.source_file.path), filename)
            header = map_bom_header(source.header)
            count = source.count_rows()
            if count > settings.BOM_MAX_LINES:
                raise InvalidUpload(
                    f"The BOM has {count:,} lines; at most {settings.BOM_MAX_LINES:,} are "
                    "accepted. Split it into several BOMs."
                )
            if count == 0:
                raise InvalidUpload("File has a header row but no data rows.")
            bom.save()
            problems: list[str] = []
            batch: list[BomLine] = []
            for line, problem in read_bom_lines(source, header):
                line.bom = bom
                batch.append(line)
                if problem:
                    problems.append(problem)
                if len(batch) >= 2000:
                    BomLine.objects.bulk_create(batch)
                    batch = []
            BomLine.objects.bulk_create(batch)
        except (FileReadError, HeaderError) as exc:
            bom.source_file.delete(save=False)
            raise InvalidUpload(str(exc))
        except InvalidUpload:
            bom.source_file.delete(save=False)
            raise
        bom.line_count = BomLine.objects.filter(bom=bom).count()
        bom.save(update_fields=["line_count"])
    return bom, problems


def enrichment_start(
    *, bom: Bom, user: Any, priority: int = 5, only: str | None = None
) -> ImportJob:
    """Queue an enrichment run of ``bom`` (all lines, or ``only="unresolved"``); refuses with
    ``RunInProgress`` (409) while one is queued or running."""
    if only not in (None, "", "all", "unresolved"):
        raise InvalidUpload(f"Unknown only {quoted(str(only))}: use 'unresolved' or leave it out.")
    queue = QUEUE_FOR_PRIORITY.get(priority)
    if queue is None:
        raise InvalidUpload(f"priority must be a whole number from 1 to 10 (got {priority}).")
    require_queue(queue)

    def start() -> ImportJob:
        locked = Bom.objects.select_for_update().get(pk=bom.pk)  # one start at a time per BOM
        running = selectors.active_run(bom=locked)
        if running is not None:
            raise RunInProgress(running)
        job = ImportJob.objects.create(
            organization_id=locked.organization_id,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            kind=JobKind.BOM_ENRICHMENT,
            original_filename=locked.name,
            priority=queue,
            options={"bom_id": locked.id, "only": only or "all", "priority": priority},
        )
        locked.latest_job = job
        locked.save(update_fields=["latest_job", "updated_at"])
        job_enqueue(job)
        return job

    return commit_queued(start)


def enrichment_retry(*, job: ImportJob) -> ImportJob:
    """A failed or cancelled run goes on as its next attempt, after the lines its earlier
    attempts stored (``services.register_retry``: the job page, the jobs API, the admin).
    Only the BOM's latest run: a newer one has been over its lines since."""

    def check(locked: ImportJob) -> None:
        # the BOM's row after the job's: a start locks only the BOM, and never an old run
        bom = (
            Bom.objects.select_for_update()
            .filter(pk=locked.options.get("bom_id"), organization_id=locked.organization_id)
            .first()
        )
        if bom is None:
            raise InvalidState("The BOM of this run was deleted; upload it again.")
        if bom.latest_job_id != locked.id:
            raise InvalidState(
                f"BOM '{bom.name}' has had a newer run since (job {bom.latest_job_id}): start "
                "a new run from the BOM instead."
            )

    return job_retry_attempt(job, check=check)


def line_resolve(*, line: BomLine, component_id: int, user: Any) -> BomLine:
    """Resolve ``line`` to a component of its organization (status ``matched``, tier
    ``manual``); the organization remembers the choice for the ``learned`` tier."""
    org_id = line.bom.organization_id
    component = Component.objects.filter(organization_id=org_id, pk=component_id).first()
    if component is None:
        raise InvalidUpload(f"component_id {component_id} is not a component of your catalogue.")
    candidate = matching.Candidate(
        component.id,
        component.manufacturer,
        component.manufacturer_key,
        component.mpn,
        component.lifecycle,
        component.stock,
        component.unit_price,
        tuple((int(q), _decimal(p)) for q, p in component.price_breaks or []),
    )
    unit = matching.unit_price_at(line.quantity, candidate.price_breaks, candidate.unit_price)
    with transaction.atomic():
        line.match_status = MatchStatus.MATCHED
        line.match_tier = MatchTier.MANUAL
        line.confidence = 1.0
        line.component = component
        line.lifecycle = component.lifecycle
        line.stock = component.stock
        line.unit_price = unit
        line.extended_price = matching.extended_price(unit, line.quantity)
        line.currency = component.currency
        line.datasheet_url = component.datasheet_url
        line.warnings = matching.warnings_for(candidate, line.quantity, unit)
        who = getattr(user, "get_username", lambda: "an operator")()
        line.notes = [f"Resolved by {who}."]
        line.enriched_at = timezone.now()
        line.catalogue_version = selectors.catalogue_version(organization_id=org_id)
        line.save()
        maker = matching.manufacturer_key(line.manufacturer)
        if maker:
            aliases = selectors.alias_map(organization_id=org_id)
            maker = matching.manufacturer_key(aliases.get(maker, line.manufacturer))
        # the keys of any line fit ``LearnedMatch``'s columns and constraints: a 200-character
        # MPN upper-cased, a 200-character name's letters and digits
        LearnedMatch.objects.update_or_create(
            organization_id=org_id,
            mpn_key=matching.exact_key(line.mpn),
            manufacturer_key=maker,
            defaults={
                "component": component,
                "created_by": user if getattr(user, "is_authenticated", False) else None,
            },
        )
    return line


def _decimal(value: Any):
    from decimal import Decimal

    return Decimal(str(value))


# The parts catalogued under an alias's name, as the alias now reads them: their maker becomes
# the canonical one, as an import would have taken it. A part the organization also has from
# the canonical maker (the same MPN) is left as it is: the two would be one part.
_APPLY_ALIAS = """
UPDATE enrichment_component c
SET manufacturer = %(canonical)s, manufacturer_key = %(canonical_key)s, updated_at = now()
WHERE c.manufacturer_key = %(alias_key)s AND {scope}
  AND NOT EXISTS (
      SELECT 1 FROM enrichment_component d
      WHERE d.organization_id = c.organization_id AND d.mpn_norm = c.mpn_norm
        AND d.mpn_key = c.mpn_key AND d.manufacturer_key = %(canonical_key)s)
RETURNING c.organization_id
"""
_LEFT_UNDER_ALIAS = """
SELECT count(*) FROM enrichment_component c WHERE c.manufacturer_key = %(alias_key)s AND {scope}
"""
# the operators' earlier choices for lines naming the alias: lines now ask by the canonical key
_APPLY_ALIAS_LEARNED = """
UPDATE enrichment_learnedmatch m SET manufacturer_key = %(canonical_key)s, updated_at = now()
WHERE m.manufacturer_key = %(alias_key)s AND {scope}
  AND NOT EXISTS (
      SELECT 1 FROM enrichment_learnedmatch n
      WHERE n.organization_id = m.organization_id AND n.mpn_key = m.mpn_key
        AND n.manufacturer_key = %(canonical_key)s)
"""
_ONE_ORGANIZATION = "{t}.organization_id = %(org)s"
# a built-in alias applies where the organization has no alias of its own for that name
_NOT_OVERRIDDEN = """{t}.organization_id NOT IN (
    SELECT a.organization_id FROM enrichment_manufactureralias a
    WHERE a.organization_id IS NOT NULL AND a.alias_key = %(alias_key)s)"""


def alias_applied(alias: ManufacturerAlias) -> tuple[int, int]:
    """After ``alias`` was saved: the parts catalogued under its name read as its canonical
    maker, in its organization (every organization without its own alias for that name, for
    a built-in one), and each changed catalogue gets a new version. Returns (parts changed,
    parts left as they were because their organization also has them from the canonical
    maker). Learned choices made for lines that named the alias move with them. A scan of
    the catalogue (every organization's, for a built-in alias): an admin's occasional step.
    Changing or deleting an alias later moves nothing back."""
    from django.db import connection

    from .catalogue_import import catalogue_bump

    canonical_key = matching.manufacturer_key(alias.canonical)
    if not alias.alias_key or alias.alias_key == canonical_key:
        return 0, 0
    scope = _ONE_ORGANIZATION if alias.organization_id else _NOT_OVERRIDDEN
    params = {
        "canonical": alias.canonical.strip(),
        "canonical_key": canonical_key,
        "alias_key": alias.alias_key,
        "org": alias.organization_id,
    }
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_APPLY_ALIAS.format(scope=scope.format(t="c")), params)
        changed = [org for (org,) in cur.fetchall()]
        cur.execute(_LEFT_UNDER_ALIAS.format(scope=scope.format(t="c")), params)
        left = cur.fetchone()[0]
        cur.execute(_APPLY_ALIAS_LEARNED.format(scope=scope.format(t="m")), params)
        for org in sorted(set(changed)):
            catalogue_bump(org)
    return len(changed), left
