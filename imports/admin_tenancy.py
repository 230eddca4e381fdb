"""Admin forms that cannot link two organizations' objects.

A raw-id or select field in the admin takes any row's id: a learned choice pointed at another
organization's part, a BOM line at another's component, a BOM at another's project. Enrichment
then copied that organization's prices and stock into this one's lines and exports, and its
project's name showed on this one's pages. ``SameOrganizationAdmin`` refuses such a save with
a form error naming both organizations.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest

# a row without an organization of its own belongs to its parent's (a BOM line to its BOM's)
PARENTS = ("bom", "order")


def organization_of(obj: Any) -> int | None:
    if obj is None or not isinstance(obj, models.Model):
        return None
    if hasattr(obj, "organization_id"):
        return obj.organization_id
    for name in PARENTS:
        parent = getattr(obj, name, None) if hasattr(type(obj), name) else None
        if parent is not None:
            return organization_of(parent)
    return None


class SameOrganizationAdmin(admin.ModelAdmin):
    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        base = super().get_form(request, obj, change=change, **kwargs)

        class Form(base):  # type: ignore[misc, valid-type]
            def clean(self) -> dict[str, Any]:
                data = super().clean()
                check_one_organization(self, data)
                return data

        return Form


def check_one_organization(form: forms.ModelForm, data: dict[str, Any]) -> None:
    """Add a form error when the objects the form links belong to different organizations."""
    instance = form.instance
    owner: tuple[str, int] | None = None
    if "organization" in data and data["organization"] is not None:
        owner = ("organization", data["organization"].pk)
    else:
        for name in PARENTS:
            if name in data and data[name] is not None:
                owner = (name, organization_of(data[name]))
                break
        else:
            found = organization_of(instance) if instance.pk else None
            if found is not None:
                owner = ("organization", found)
    if owner is None or owner[1] is None:
        return
    for name, value in list(data.items()):  # add_error drops the field from ``data``
        if name == owner[0] or name == "organization" or not isinstance(value, models.Model):
            continue
        theirs = organization_of(value)
        if theirs is not None and theirs != owner[1]:
            form.add_error(
                name,
                f"This belongs to organization {theirs}; the {owner[0]} is organization "
                f"{owner[1]}'s. Pick one of organization {owner[1]}.",
            )
