from __future__ import annotations

from django.contrib import admin, messages
from django.db import IntegrityError, models
from django.db.models import QuerySet
from django.http import HttpRequest

from imports.admin_tenancy import SameOrganizationAdmin

from .models import Bom, BomLine, Catalogue, Component, LearnedMatch, ManufacturerAlias, Project


def _groups(parts: QuerySet) -> dict[int, set[str]]:
    """The normalized MPNs of ``parts``, by organization."""
    groups: dict[int, set[str]] = {}
    for org, norm in parts.values_list("organization_id", "mpn_norm"):
        groups.setdefault(org, set()).add(norm)
    return groups


def _flag_groups(groups: dict[int, set[str]]) -> None:
    from .catalogue_import import flag_some

    for org, norms in groups.items():
        flag_some(org, norms)


# datasheet links are https today (and Django 6's default)
URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    formfield_overrides = URL_FIELDS
    list_display = [
        "mpn",
        "manufacturer",
        "lifecycle",
        "stock",
        "unit_price",
        "currency",
        "mpn_norm_shared",
        "organization",
    ]
    list_filter = ["lifecycle", "mpn_norm_shared", "organization"]
    search_fields = ["mpn_key", "mpn_norm", "manufacturer"]
    readonly_fields = ["manufacturer_key", "mpn_key", "mpn_norm", "mpn_base", "mpn_norm_shared"]

    def get_readonly_fields(self, request: HttpRequest, obj: Component | None = None) -> list:
        # moving a part to another organization would take the BOM lines and learned choices
        # that name it along, across organizations
        fixed = ["organization"] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    list_select_related = ["organization"]
    show_full_result_count = False  # a million-row catalogue: no count(*) per page

    # One part added, edited or deleted: only the groups of its old and new normalized MPN can
    # change their shared-key flags (``flag_some``: milliseconds, where grouping a 1M-part
    # catalogue took 1.6 s of the request), and the catalogue gets a new version.
    def save_model(self, request, obj, form, change):
        groups = _groups(Component.objects.filter(pk=obj.pk)) if obj.pk else {}
        super().save_model(request, obj, form, change)
        groups.setdefault(obj.organization_id, set()).add(obj.mpn_norm)
        _flag_groups(groups)

    def delete_model(self, request, obj):
        self.delete_queryset(request, Component.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        groups = _groups(queryset)
        super().delete_queryset(request, queryset)
        _flag_groups(groups)

    def get_search_results(self, request, queryset, search_term):
        from .matching import normalize_mpn

        # the MPN box searches the normalized key by prefix (served by its index)
        key = normalize_mpn(search_term)
        if key:
            return queryset.filter(mpn_norm__startswith=key), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(ManufacturerAlias)
class ManufacturerAliasAdmin(admin.ModelAdmin):
    list_display = ["alias", "canonical", "organization"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["alias", "canonical"]
    readonly_fields = ["alias_key"]

    # the parts already catalogued under the alias's name take its canonical maker, as an
    # import after the alias would have written them
    def save_model(self, request, obj, form, change):
        from .services import alias_applied

        super().save_model(request, obj, form, change)
        try:
            changed, left = alias_applied(obj)
        except IntegrityError:  # an import added the same part from the canonical maker meanwhile
            self.message_user(
                request,
                f"The alias is saved, but the parts under '{obj.alias}' could not be moved now "
                "(the catalogue changed meanwhile): save the alias again.",
                messages.ERROR,
            )
            return
        if changed or left:
            text = (
                f"{changed} catalogued part(s) under '{obj.alias}' now read as '{obj.canonical}'."
            )
            if left:
                text += (
                    f" {left} part(s) left under '{obj.alias}': their organization also has them "
                    f"from '{obj.canonical}'."
                )
            self.message_user(request, text, messages.WARNING if left else messages.SUCCESS)


@admin.register(Catalogue)
class CatalogueAdmin(admin.ModelAdmin):
    list_display = ["organization", "version", "updated_at"]
    readonly_fields = ["version", "updated_at"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "created_by", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name"]


class BomLineInline(admin.TabularInline):
    formfield_overrides = URL_FIELDS
    model = BomLine
    fields = [
        "line_number",
        "references",
        "quantity",
        "mpn",
        "manufacturer",
        "dnp",
        "match_status",
        "match_tier",
        "confidence",
        "component",
    ]
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[BomLine]:
        # the first lines only: a 50,000-line BOM must not render every line here
        qs = super().get_queryset(request).select_related("component")
        return qs.filter(line_number__lte=201)


@admin.register(Bom)
class BomAdmin(SameOrganizationAdmin):
    list_display = ["name", "project", "line_count", "organization", "created_by", "created_at"]
    list_filter = ["organization", "project"]
    search_fields = ["name", "original_filename"]
    readonly_fields = ["line_count", "latest_job", "summary", "created_at", "updated_at"]
    inlines = [BomLineInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Bom | None = None) -> list:
        # its lines' components and its project are its organization's
        fixed = ["organization"] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]


@admin.register(BomLine)
class BomLineAdmin(SameOrganizationAdmin):
    formfield_overrides = URL_FIELDS
    list_display = [
        "bom",
        "line_number",
        "mpn",
        "manufacturer",
        "quantity",
        "match_status",
        "match_tier",
        "confidence",
        "component",
    ]
    list_filter = ["match_status", "match_tier", "lifecycle", "dnp"]
    search_fields = ["mpn", "references"]
    raw_id_fields = ["bom", "component"]
    list_select_related = ["bom", "component"]
    show_full_result_count = False
    # what runs and resolving write, in the shapes the API, the page and the export read:
    # free JSON typed here broke them (a candidate of [1] was a 500 on the lines API)
    readonly_fields = ["candidates", "warnings", "notes", "enriched_at", "catalogue_version"]


@admin.register(LearnedMatch)
class LearnedMatchAdmin(SameOrganizationAdmin):
    list_display = ["mpn_key", "manufacturer_key", "component", "organization", "updated_at"]
    list_filter = ["organization"]
    search_fields = ["mpn_key"]
    raw_id_fields = ["component"]
