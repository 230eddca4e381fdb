"""Migration 0008: parts whose MPN is not ASCII get the normalized keys the unique index needs
(normalized after upper-casing, as the MPN key is), and their flags are taken again."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection, transaction

from enrichment.enrich import LineInput, Matcher
from enrichment.models import Component
from tests.fixtures.enrichment import make_component

pytestmark = pytest.mark.django_db

_0008 = importlib.import_module("enrichment.migrations.0008_component_one_unique_index_by_norm")


def test_non_ascii_parts_are_normalized_again_and_flagged(org, other_org):
    sharp = make_component(org, "Nexperia", "Xß-1")
    plain = make_component(org, "Nexperia", "XSS1")
    elsewhere = make_component(other_org, "Nexperia", "Xß-1")
    ascii_part = make_component(org, "Nexperia", "BAS16J")
    # as a part with a non-ASCII MPN was stored before: normalized before upper-casing
    Component.objects.filter(mpn="Xß-1").update(mpn_norm="X1", mpn_base="X1")

    with connection.schema_editor() as editor:
        _0008.renormalize_non_ascii(apps, editor)

    for part in (sharp, plain, elsewhere, ascii_part):
        part.refresh_from_db()
    assert (sharp.mpn_norm, sharp.mpn_base, sharp.mpn_key) == ("XSS1", "XSS1", "XSS-1")
    assert elsewhere.mpn_norm == "XSS1"
    # two parts of one organization now share a normalized key: both flagged, the other
    # organization's part (alone there) and the untouched part are not
    assert sharp.mpn_norm_shared and plain.mpn_norm_shared
    assert not elsewhere.mpn_norm_shared and not ascii_part.mpn_norm_shared
    assert ascii_part.mpn_norm == "BAS16J"


def test_the_exact_tier_finds_a_part_by_either_spelling_of_its_key(org):
    """The exact tier looks up (normalized MPN, MPN key) in the unique index: a line written
    ``STRASSE`` finds the part catalogued as ``straße`` (one key), exactly."""
    part = make_component(org, "Nexperia", "straße")
    matcher = Matcher(organization_id=org.id, aliases={})
    with transaction.atomic():
        (got,) = matcher.match([LineInput(1, "STRASSE", "Nexperia", 1, False)])
    assert got.decision.status == "matched" and got.decision.tier == "exact"
    assert got.decision.component.id == part.id
