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
    nopb = make_component(org, "Texas Instruments", "LM317T/NOPB")
    reel = make_component(org, "Analog Devices", "LT1763CS8#TRMPBF")
    other = make_component(org, "Nexperia", "BAS16J,115")
    alone = make_component(org, "Texas Instruments", "/NOPB")  # the suffix is all there is
    # as they were stored before the suffixes were known
    Component.objects.filter(pk=nopb.pk).update(mpn_base="LM317TNOPB")
    Component.objects.filter(pk=reel.pk).update(mpn_base="LT1763CS8TRMPBF")
    Component.objects.filter(pk=alone.pk).update(mpn_base="NOPB")

    with connection.schema_editor() as editor:
        _0011.rebase(apps, editor)

    got = dict(Component.objects.values_list("mpn", "mpn_base"))
    assert got == {
        "LM317T/NOPB": "LM317T",
        "LT1763CS8#TRMPBF": "LT1763CS8",
        "BAS16J,115": "BAS16J",
        "/NOPB": "NOPB",
    }
    assert other.mpn_base == "BAS16J"
