"""Migration 0011: parts catalogued with a packaging suffix added later (``/NOPB``, ``#TRMPBF``,
``#TRM``) get the packaging key an import now gives them."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection

from enrichment.models import Component
from tests.fixtures.enrichment import make_component

pytestmark = pytest.mark.django_db

_0011 = importlib.import_module("enrichment.migrations.0011_component_base_new_packaging_suffixes")


def test_parts_with_the_new_suffixes_get_their_packaging_key(org):
    stale = {  # as they were stored before the suffixes were known
        "LM317T/NOPB": "LM317TNOPB",
        "LT1763CS8#TRMPBF": "LT1763CS8TRMPBF",
        "LT1763CS8-TRMPBF": "LT1763CS8TRMPBF",
        "LT1763CS8#TRM": "LT1763CS8TRM",
        "/NOPB": "NOPB",  # the suffix is all there is: it stays
    }
    for mpn, base in stale.items():
        part = make_component(org, "Analog Devices", mpn)
        Component.objects.filter(pk=part.pk).update(mpn_base=base)
    make_component(org, "Nexperia", "BAS16J,115")  # a suffix known before: untouched

    with connection.schema_editor() as editor:
        _0011.rebase(apps, editor)

    got = dict(Component.objects.values_list("mpn", "mpn_base"))
    assert got == {
        "LM317T/NOPB": "LM317T",
        "LT1763CS8#TRMPBF": "LT1763CS8",
        "LT1763CS8-TRMPBF": "LT1763CS8",
        "LT1763CS8#TRM": "LT1763CS8",
        "/NOPB": "NOPB",
        "BAS16J,115": "BAS16J",
    }
