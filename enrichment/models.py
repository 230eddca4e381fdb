"""The component catalogue, manufacturer aliases, projects, BOMs, their lines, learned choices."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Func, Q
from django.db.models.functions import Now, Reverse, Upper
from django.db.models.lookups import LessThanOrEqual

from imports.models import ImportJob, Organization

from . import matching


class Lifecycle(models.TextChoices):
    ACTIVE = "active", "Active"
    NRND = "nrnd", "Not recommended for new designs"
    LAST_TIME_BUY = "last_time_buy", "Last time buy"
    EOL = "eol", "End of life"
    OBSOLETE = "obsolete", "Obsolete"
    UNKNOWN = "unknown", "Unknown"


class MatchStatus(models.TextChoices):
    PENDING = "pending", "Not enriched yet"
    MATCHED = "matched", "Matched"
    AMBIGUOUS = "ambiguous", "Ambiguous"
    NOT_FOUND = "not_found", "Not found"
    SKIPPED = "skipped", "Skipped (not populated)"
    ERROR = "error", "Error"


UNRESOLVED = (MatchStatus.AMBIGUOUS, MatchStatus.NOT_FOUND, MatchStatus.ERROR)


class MatchTier(models.TextChoices):
    NONE = "", "—"
    EXACT = "exact", "Exact"
    NORMALIZED = "normalized", "Normalized"
    PACKAGING = "packaging", "Packaging variant"
    LEARNED = "learned", "Learned"
    TRIGRAM = "trigram", "Similar (proposal)"
    MANUAL = "manual", "Manual"


class Component(models.Model):
    """A catalogue part of one organization. The ``*_key`` columns are what matching joins on
    (``enrichment/matching.py`` computes them); only the component import and ``save()`` set
    them."""

    id = models.BigAutoField(primary_key=True)
    # The unique index starts with organization: no index of its own. No database-level FK
    # check either (as for products): its deferred trigger ran once per imported row at commit,
    # a third of the import writer's database time (16.6 of 50 CPU-seconds for 1M components,
    # measured). Components are written by the import writer with its job's organization (and
    # by the admin, through a form), and deleting an organization still deletes its
    # components (CASCADE is Django's).
    organization = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="components",
        db_index=False,
        db_constraint=False,
    )
    manufacturer = models.CharField(max_length=200, help_text="Canonical name (after aliases).")
    mpn = models.CharField("MPN", max_length=100)
    manufacturer_key = models.CharField(max_length=200, editable=False)
    mpn_key = models.CharField(max_length=100, editable=False, help_text="Trimmed, upper case.")
    mpn_norm = models.CharField(max_length=100, editable=False, help_text="Letters and digits.")
    mpn_base = models.CharField(max_length=100, editable=False, help_text="Without packaging.")
    # The normalized MPN backwards, for the look-alikes that end as a line's MPN does
    # (``enrich.py``). A column of its own rather than an index on reverse(mpn_norm): the
    # proposals' backward scans then read the index alone (PostgreSQL serves an index-only scan
    # from plain columns only), not a heap page per neighbour.
    mpn_rev = models.GeneratedField(
        expression=Reverse("mpn_norm"),
        output_field=models.CharField(max_length=100),
        db_persist=True,
    )
    # The database's own defaults too (``db_default``) for what a first load leaves out: its
    # batches are COPYed straight into the table (``catalogue_import``).
    mpn_norm_shared = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Another part of the catalogue has the same normalized MPN: never auto-matched "
        "on it.",
    )
    description = models.TextField(blank=True, default="")
    category = models.CharField(max_length=200, blank=True, default="")
    package = models.CharField(max_length=100, blank=True, default="")
    lifecycle = models.CharField(
        max_length=16, choices=Lifecycle.choices, default=Lifecycle.UNKNOWN
    )
    datasheet_url = models.URLField(max_length=500, blank=True, default="")
    stock = models.BigIntegerField(default=0)
    moq = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    # [[quantity, "unit price"], ...] as the file gave them: readers sort them by quantity
    price_breaks = models.JSONField(default=list, blank=True)
    alternates = models.JSONField(
        default=list, db_default=[], blank=True, help_text="Alternate MPNs."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["mpn", "manufacturer"]
        constraints = [
            # One B-tree serves the uniqueness, the exact tier, the normalized tier and the
            # forward neighbour ranges: the normalized MPN is a function of the MPN key
            # (``matching.normalize_mpn``), so (organization, normalized MPN, MPN key, maker key)
            # is unique exactly when (organization, MPN key, maker key) is, and every lookup
            # by MPN key also knows its normalized MPN. Each B-tree the import maintains costs
            # it about a tenth of its rows/s (1M parts, measured: 13 % for this merge). Pattern
            # ops on the normalized MPN: byte-wise ranges (see enrich.py).
            models.UniqueConstraint(
                fields=["organization", "mpn_norm", "mpn_key", "manufacturer_key"],
                opclasses=["int8_ops", "varchar_pattern_ops", "text_ops", "text_ops"],
                name="component_unique_per_org",
            ),
            models.CheckConstraint(condition=Q(stock__gte=0), name="component_stock_nonneg"),
        ]
        indexes = [
            # the few flagged parts, for clearing a flag that no longer holds without reading
            # the whole catalogue (an import's rows come in unflagged: no entry, no cost)
            models.Index(
                fields=["organization"],
                condition=Q(mpn_norm_shared=True),
                name="component_shared",
            ),
            # the look-alikes' backward neighbour ranges, byte-wise (``enrich.py``). Partial on a
            # condition every part meets, so that only a statement that names ``mpn_rev`` can use
            # it: planned on an organization's stale statistics (one part, after a first load),
            # a lookup by organization and normalized MPN found it as cheap as the unique index
            # and would read the whole organization through it.
            models.Index(
                fields=["organization", "mpn_rev"],
                opclasses=["int8_ops", "varchar_pattern_ops"],
                condition=Q(mpn_rev__isnull=False),
                name="component_mpn_rev",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mpn} ({self.manufacturer})"

    def save(self, *args, **kwargs) -> None:
        self.set_keys()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """The manufacturer through the organization's aliases, as an import takes it (``TI``
        is Texas Instruments), then what the database would refuse, as form errors: the keys
        are computed here, and a form leaves them out of its constraint checks (they are not
        its fields)."""
        from .catalogue import Canonicalizer, clean_breaks
        from .selectors import alias_map

        super().clean()
        if self.organization_id is not None and self.manufacturer.strip():
            aliases = alias_map(organization_id=self.organization_id)
            self.manufacturer = Canonicalizer(aliases)(self.manufacturer)[0]
        self.set_keys()
        limit = self._meta.get_field("mpn_key").max_length
        if len(self.mpn_key) > limit:
            raise ValidationError(
                {"mpn": f"Upper-cased, this MPN is longer than {limit} characters."}
            )
        if not self.mpn_norm:
            raise ValidationError({"mpn": "The MPN has no letters or digits."})
        breaks = clean_breaks(self.price_breaks)
        if isinstance(breaks, str):
            raise ValidationError({"price_breaks": breaks[0].upper() + breaks[1:] + "."})
        self.price_breaks = breaks
        if self.organization_id is None:
            return  # the form names the missing organization
        same = Component.objects.filter(
            organization_id=self.organization_id,
            mpn_norm=self.mpn_norm,
            mpn_key=self.mpn_key,
            manufacturer_key=self.manufacturer_key,
        ).exclude(pk=self.pk)
        if same.exists():
            raise ValidationError(
                {"mpn": "The organization already has this part (same manufacturer and MPN)."}
            )

    def set_keys(self) -> None:
        self.mpn = self.mpn.strip()
        self.manufacturer = self.manufacturer.strip()
        self.manufacturer_key = matching.manufacturer_key(self.manufacturer)
        self.mpn_key = matching.exact_key(self.mpn)
        self.mpn_norm = matching.normalize_mpn(self.mpn)
        self.mpn_base = matching.packaging_key(self.mpn)


class ManufacturerAlias(models.Model):
    """``TI`` → ``Texas Instruments``. Rows without an organization are the built-in list
    (loaded by a data migration); an organization's own rows win over them."""

    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="aliases"
    )
    alias = models.CharField(max_length=200)
    alias_key = models.CharField(max_length=200, editable=False)
    canonical = models.CharField(max_length=200)

    class Meta:
        ordering = ["alias"]
        verbose_name_plural = "manufacturer aliases"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "alias_key"],
                name="alias_unique_per_org",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.alias} → {self.canonical}"

    def save(self, *args, **kwargs) -> None:
        self.alias_key = matching.manufacturer_key(self.alias)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # the uniqueness is on ``alias_key``, which no form shows, so Django's own check of the
        # constraint leaves it out: a second ``TI`` (or ``T.I.``) would reach the database
        key = matching.manufacturer_key(self.alias)
        if not key:
            raise ValidationError({"alias": "An alias needs at least one letter or digit."})
        same = ManufacturerAlias.objects.filter(
            organization_id=self.organization_id, alias_key=key
        ).exclude(pk=self.pk)
        taken = same.first()
        if taken is not None:
            whose = "the built-in list" if self.organization_id is None else "this organization"
            raise ValidationError(
                {"alias": f"'{taken.alias}' → '{taken.canonical}' is already in {whose}: edit it."}
            )


class Catalogue(models.Model):
    """An organization's catalogue version: bumped by every component import and edit, and
    recorded on each enriched line."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="catalogue"
    )
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    # when the last grouping of the whole catalogue began: the shared-key flags hold for every
    # part committed before it (``catalogue_import.catalogue_loaded``)
    regrouped_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.organization} catalogue v{self.version}"


class Project(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Upper("name"), "organization", name="project_name_unique_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name


def bom_upload_path(bom: Bom, filename: str) -> str:
    return f"boms/{bom.organization_id}/{filename}"


class Bom(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="boms")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="boms"
    )
    name = models.CharField(max_length=200)
    source_file = models.FileField(upload_to=bom_upload_path, max_length=500, blank=True)
    original_filename = models.CharField(max_length=255, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    line_count = models.PositiveIntegerField(default=0)
    latest_job = models.ForeignKey(
        ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # the latest run's summary: counts, total cost, lines with warnings, time per tier
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="bom_org_newest")]

    def __str__(self) -> str:
        return self.name


class BomLine(models.Model):
    id = models.BigAutoField(primary_key=True)
    # no index of its own: the unique (bom, line_number) index serves every lookup by BOM, and
    # each index is written again for every line an enrichment run updates
    bom = models.ForeignKey(Bom, on_delete=models.CASCADE, related_name="lines", db_index=False)
    line_number = models.PositiveIntegerField(help_text="The file row (the header is row 1).")
    references = models.TextField("reference designators", blank=True, default="")
    quantity = models.PositiveIntegerField(default=1)
    mpn = models.CharField("MPN", max_length=200, blank=True, default="")
    manufacturer = models.CharField(max_length=200, blank=True, default="")
    description = models.TextField(blank=True, default="")
    dnp = models.BooleanField("do not populate", default=False)
    # the result
    match_status = models.CharField(
        max_length=16, choices=MatchStatus.choices, default=MatchStatus.PENDING
    )
    match_tier = models.CharField(
        max_length=16, choices=MatchTier.choices, blank=True, default=MatchTier.NONE
    )
    confidence = models.FloatField(default=0.0)
    # No database-level FK check: its deferred trigger ran at each chunk's commit for every
    # matched line, locking the component's row (FOR KEY SHARE writes the catalogue's heap
    # page), 40 ms a 2,000-line chunk, a fifth of an enrichment run (measured). Only the
    # matcher and the resolve endpoint set it, both with a component of the line's
    # organization; deleting a component through Django still clears it (SET_NULL is Django's),
    # and a line whose component is gone reads as having none.
    component = models.ForeignKey(
        Component,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    # [{"component_id": 1, "score": 0.8}, ...] at most five, best first
    candidates = models.JSONField(default=list, blank=True)
    lifecycle = models.CharField(max_length=16, blank=True, default="")
    stock = models.BigIntegerField(null=True, blank=True)
    unit_price = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    extended_price = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    datasheet_url = models.URLField(max_length=500, blank=True, default="")
    warnings = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=list, blank=True)
    enriched_at = models.DateTimeField(null=True, blank=True)
    catalogue_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["line_number"]
        constraints = [
            models.UniqueConstraint(fields=["bom", "line_number"], name="bomline_unique_number")
        ]
        indexes = [models.Index(fields=["bom", "match_status"], name="bomline_bom_status")]

    def __str__(self) -> str:
        return f"{self.bom_id}#{self.line_number} {self.mpn}"


# a BOM line's MPN (200 characters) upper-cased: no character upper-cases to more than six
# bytes of UTF-8 (checked over every code point)
LEARNED_MPN_KEY_BYTES = 1_200
LEARNED_MAKER_KEY_BYTES = 4 * matching.MAKER_KEY_MAX


class LearnedMatch(models.Model):
    """An operator's choice for an MPN (and manufacturer, '' when the line gave none): the
    ``learned`` tier offers it to later lines of the organization."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="learned_matches", db_index=False
    )
    # A line's keys: its MPN (200 characters) and its maker's name (200) upper-cased, and
    # upper case can lengthen a text up to three times ("ß" is "SS", "ΐ" three characters).
    # Both keys together stay under a B-tree entry's limit (2,704 bytes): a maker's key is
    # ASCII letters and digits (at most 600 bytes) or, for a name without any, at most
    # LEARNED_MAKER_KEY_BYTES; an MPN key at most LEARNED_MPN_KEY_BYTES (the constraints).
    mpn_key = models.CharField(max_length=600)
    manufacturer_key = models.CharField(max_length=600, blank=True, default="")
    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "mpn_key", "manufacturer_key"], name="learned_unique"
            ),
            # what keeps both keys under the B-tree entry's limit whoever writes them (the
            # admin too), and what the learned tier can find: a maker's key as
            # ``matching.manufacturer_key`` writes it
            # (a name without ASCII letters or digits keys on its own letters: not checked
            # here beyond its length, which keeps it under LEARNED_MAKER_KEY_BYTES)
            models.CheckConstraint(
                condition=Q(manufacturer_key__regex=r"^[0-9A-Z]*$")
                | (
                    Q(manufacturer_key__regex=r"[^\x01-\x7f]")
                    & Q(
                        LessThanOrEqual(
                            Func(
                                "manufacturer_key",
                                function="octet_length",
                                output_field=models.IntegerField(),
                            ),
                            LEARNED_MAKER_KEY_BYTES,
                        )
                    )
                ),
                name="learned_maker_key_form",
                violation_error_message=(
                    "A manufacturer key is the maker's letters and digits in upper case, "
                    "such as TEXASINSTRUMENTS for Texas Instruments."
                ),
            ),
            models.CheckConstraint(
                condition=LessThanOrEqual(
                    Func("mpn_key", function="octet_length", output_field=models.IntegerField()),
                    LEARNED_MPN_KEY_BYTES,
                ),
                name="learned_mpn_key_bytes",
                violation_error_message=(
                    f"An MPN key is at most {LEARNED_MPN_KEY_BYTES:,} bytes of UTF-8 (what "
                    "the longest part number a BOM line holds gives once upper-cased)."
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mpn_key} → {self.component_id}"
