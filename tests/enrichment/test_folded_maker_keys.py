"""A maker's key folds accents and compatibility forms to the letters under them: ``Würth`` was
``WRTH`` and ``Wurth`` ``WURTH``, so a line naming Wurth Elektronik eiSos (as most BOMs typed
on an English keyboard do) never found the parts catalogued as Würth Elektronik eiSos."""

from __future__ import annotations

import importlib
import sys
import unicodedata

import pytest
from django.apps import apps
from django.db import connection

from enrichment import matching, services
from enrichment.catalogue_import import catalogue_loaded
from enrichment.models import BomLine, Catalogue, Component, LearnedMatch, ManufacturerAlias
from imports import jobs
from imports.models import JobStatus
from tests.enrichment.test_api import enrich, post_bom
from tests.fixtures.enrichment import components_csv, make_component
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)

_0015 = importlib.import_module("enrichment.migrations.0015_folded_maker_keys")
WE = "Würth Elektronik eiSos"  # no built-in alias names it


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (WE, "Wurth Elektronik eiSos"),
        ("Weidmüller", "WEIDMULLER"),
        ("Nexpería", "Nexperia"),
        ("Straße AG", "STRASSE AG"),
        ("Ørsted Electronics", "Orsted Electronics"),
        ("\uff34\uff29 Inc", "TI Inc"),  # full-width TI: its letters were dropped
        ("ﬁnisar", "Finisar"),  # a ligature
    ],
)
def test_accented_and_plain_spellings_share_a_key(a, b):
    assert matching.manufacturer_key(a) == matching.manufacturer_key(b) != ""


def test_every_code_point_keys_stably_and_within_the_column():
    """The API keys a filter that may already be a key; a key fits ``manufacturer_key``."""
    for cp in range(0x80, sys.maxunicode + 1):
        c = chr(cp)
        if unicodedata.category(c) in ("Cn", "Co"):
            continue  # unassigned and private-use code points neither decompose nor case
        for name in (c, f"A{c}", c * 3, f"\u6751{c}"):
            key = matching.manufacturer_key(name)
            assert matching.manufacturer_key(key) == key, (hex(cp), name, key)
            assert len(key) <= matching.MAKER_KEY_MAX
    assert matching.manufacturer_key("村田製作所") == "村田製作所"  # no letter folds to ASCII
    assert len(matching.manufacturer_key("\u3250" * 200)) == matching.MAKER_KEY_MAX  # PTE each


def _part(maker, mpn):
    return [maker, mpn, "", "", "", "active", "", "100", "1", "0.02", "USD", ""]


def test_a_line_spelling_the_maker_without_accents_finds_its_part(api, org):
    job = services.component_import_create(
        organization=org,
        user=None,
        upload=upload(
            components_csv([_part(WE, "7427927310"), _part("Laird", "7427927310")]), "p.csv"
        ),
    )
    jobs.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.created_rows == 2, job.errors
    we = Component.objects.get(manufacturer=WE)
    rows = [
        ("L1", "1", "7427927310", "Wurth Elektronik eiSos", "", ""),
        ("L2", "1", "7427927310", "WÜRTH ELEKTRONIK EISOS", "", ""),
    ]
    bom_id = post_bom(api, rows=rows).json()["id"]
    enrich(api, bom_id)
    for line in BomLine.objects.filter(bom_id=bom_id):
        assert (line.match_status, line.component_id) == ("matched", we.id), line.line_number
    # and the components API finds it by either spelling
    for name in ("Wurth Elektronik eiSos", WE):
        found = api.get("/api/v1/components", {"manufacturer": name}).json()["results"]
        assert [c["id"] for c in found] == [we.id], name


def test_the_migration_gives_stored_keys_their_folded_form(org, other_org):
    we = make_component(org, WE, "744031")
    weid = make_component(org, "Weidmüller", "WEIDMULLER-TMP")
    plain = make_component(org, "Weidmuller", "1469600000")  # holds WEIDMULLER already
    murata = make_component(org, "村田製作所", "GRM1")
    other = make_component(other_org, "Yageo", "RC1")
    catalogue_loaded(org.id)
    catalogue_loaded(other_org.id)
    versions = dict(Catalogue.objects.values_list("organization_id", "version"))
    # as the code before the fold stored them
    Component.objects.filter(pk=we.pk).update(manufacturer_key="WRTHELEKTRONIKEISOS")
    Component.objects.filter(pk=weid.pk).update(
        manufacturer_key="WEIDMLLER",
        mpn="1469600000",
        mpn_key="1469600000",
        mpn_norm="1469600000",
        mpn_base="1469600000",
    )
    learned = LearnedMatch.objects.create(
        organization=org, mpn_key="744031-X", manufacturer_key="WRTHELEKTRONIKEISOS", component=we
    )
    for_other = LearnedMatch.objects.create(  # a line of another maker: its key stays
        organization=org, mpn_key="744031-Y", manufacturer_key="ACME", component=we
    )
    alias = ManufacturerAlias.objects.create(organization=org, alias="Würth eiSos", canonical=WE)
    ManufacturerAlias.objects.filter(pk=alias.pk).update(alias_key="WRTHEISOS")

    with connection.schema_editor() as editor:
        _0015.rekey(apps, editor)

    keys = dict(Component.objects.values_list("pk", "manufacturer_key"))
    assert keys[we.pk] == "WURTHELEKTRONIKEISOS"
    assert keys[weid.pk] == "WEIDMLLER"  # the plain spelling's part of that MPN holds the key
    assert keys[plain.pk] == "WEIDMULLER"
    assert keys[murata.pk] == "村田製作所" and keys[other.pk] == "YAGEO"
    learned.refresh_from_db()
    for_other.refresh_from_db()
    assert learned.manufacturer_key == "WURTHELEKTRONIKEISOS"
    assert for_other.manufacturer_key == "ACME"
    alias.refresh_from_db()
    assert alias.alias_key == "WURTHEISOS"
    after = dict(Catalogue.objects.values_list("organization_id", "version"))
    assert after[org.id] == versions[org.id] + 1 and after[other_org.id] == versions[other_org.id]
