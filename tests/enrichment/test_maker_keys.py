"""Makers whose names have no ASCII letter or digit (村田製作所, 风华) are makers of their own:
their key was empty, so two of them cataloguing one MPN were one part, and a line naming one
was matched as if it named none."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from enrichment import matching, services
from enrichment.catalogue_import import catalogue_loaded
from enrichment.models import BomLine, Catalogue, Component, LearnedMatch
from imports import jobs
from imports.models import JobStatus
from tests.fixtures.enrichment import bom_csv, components_csv, make_component
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)

_0014 = importlib.import_module("enrichment.migrations.0014_unicode_maker_keys")
MURATA, FENGHUA = "村田製作所", "风华"


def _part(maker, mpn, stock="10"):
    return [maker, mpn, "", "", "", "active", "", stock, "1", "0.02", "USD", ""]


def test_keys_of_names_without_ascii_letters():
    assert matching.manufacturer_key(MURATA) == MURATA
    assert matching.manufacturer_key("風華 (高科)") == "風華高科"
    assert matching.manufacturer_key("\uff34\uff29") == "TI"  # full width
    # a name with ASCII letters or digits keys on those, as always
    assert matching.manufacturer_key("TI(德州仪器)") == "TI"
    assert matching.manufacturer_key("Texas Instruments") == "TEXASINSTRUMENTS"
    assert matching.manufacturer_key("—") == ""
    assert len(matching.manufacturer_key("株" * 300)) == matching.MAKER_KEY_MAX
    # full-width Latin among them: those letters are the key, as ASCII ones would be
    wide = "村田製作所\uff08\uff2d\uff35\uff32\uff21\uff34\uff21\uff09"  # "(MURATA)" in full width
    assert matching.manufacturer_key(wide) == "MURATA"


@pytest.mark.parametrize(
    "name",
    [MURATA, FENGHUA, "风华\uff12", "株式会社\uff34\uff24\uff2b", "\u0390", "村\u1f52", "ß" * 3],
)
def test_a_key_s_key_is_the_key(name):
    """The API keys a filter that may already be a key (``?manufacturer=``)."""
    key = matching.manufacturer_key(name)
    assert matching.manufacturer_key(key) == key


def test_two_such_makers_of_one_mpn_are_two_parts_and_a_line_finds_its_own(api, org):
    job = services.component_import_create(
        organization=org,
        user=None,
        upload=upload(
            components_csv(
                [_part(MURATA, "GRM188R71H104KA93D"), _part(FENGHUA, "GRM188R71H104KA93D")]
            ),
            "parts.csv",
        ),
    )
    jobs.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.created_rows == 2, job.errors
    assert sorted(Component.objects.values_list("manufacturer_key", flat=True)) == sorted(
        [MURATA, FENGHUA]
    )
    murata = Component.objects.get(manufacturer=MURATA)

    rows = [
        ("C1", "1", "GRM188R71H104KA93D", MURATA, "", ""),
        ("C2", "1", "GRM188R71H104KA93D", "", "", ""),
    ]
    bom_id = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(rows), "b.csv")}, format="multipart"
    ).json()["id"]
    resp = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert resp.status_code == 202, resp.content
    jobs.run_job(resp.json()["id"])
    named, unnamed = BomLine.objects.filter(bom_id=bom_id).order_by("line_number")
    assert (named.match_status, named.component_id) == ("matched", murata.id)
    assert unnamed.match_status == "ambiguous"  # no maker on the line: either one

    # the operator's choice for a line naming such a maker is remembered under its key
    other = BomLine.objects.create(
        bom_id=bom_id, line_number=99, mpn="GRM-OTHER", manufacturer=MURATA, quantity=1
    )
    resp = api.patch(
        f"/api/v1/boms/{bom_id}/lines/{other.id}", {"component_id": murata.id}, format="json"
    )
    assert resp.status_code == 200, resp.content
    learned = LearnedMatch.objects.get(organization=org)
    assert (learned.mpn_key, learned.manufacturer_key) == ("GRM-OTHER", MURATA)


def test_a_learned_key_is_still_checked(org):
    part = make_component(org, "Murata", "GRM1")
    for bad in ("murata", "MURATA INC", "株" * 300):
        with pytest.raises(IntegrityError), transaction.atomic():
            LearnedMatch.objects.create(
                organization=org, mpn_key="GRM1", manufacturer_key=bad, component=part
            )


def test_the_migration_gives_parts_stored_keyless_their_key(org, other_org):
    murata = make_component(org, MURATA, "GRM1")
    fenghua = make_component(org, FENGHUA, "GRM1")
    ti = make_component(org, "TI", "LM1")
    wide = make_component(org, "\uff34\uff29", "LM2")  # full-width TI: its key is TI's
    elsewhere = make_component(other_org, "Yageo", "RC1")
    catalogue_loaded(org.id)
    catalogue_loaded(other_org.id)
    versions = dict(Catalogue.objects.values_list("organization_id", "version"))
    # as an import stored them before: keyless (the full-width TI's LM1 beside TI's LM1)
    Component.objects.filter(pk=murata.pk).update(manufacturer_key="")
    Component.objects.filter(pk=wide.pk).update(
        manufacturer_key="", mpn="LM1", mpn_key="LM1", mpn_norm="LM1", mpn_base="LM1"
    )

    with connection.schema_editor() as editor:
        _0014.rekey(apps, editor)

    keys = dict(Component.objects.values_list("pk", "manufacturer_key"))
    assert keys[murata.pk] == MURATA and keys[fenghua.pk] == FENGHUA
    assert keys[ti.pk] == "TI" and keys[elsewhere.pk] == "YAGEO"
    assert keys[wide.pk] == ""  # TI's LM1 holds that key: left as it was
    after = dict(Catalogue.objects.values_list("organization_id", "version"))
    assert after[org.id] == versions[org.id] + 1 and after[other_org.id] == versions[other_org.id]


def test_such_a_name_can_be_an_alias(org):
    """Its alias row had the empty key, which the admin refuses: a catalogue in Chinese could
    not say that 德州仪器 is Texas Instruments."""
    from enrichment.models import ManufacturerAlias

    alias = ManufacturerAlias(organization=org, alias="德州仪器", canonical="Texas Instruments")
    alias.full_clean()
    alias.save()
    job = services.component_import_create(
        organization=org,
        user=None,
        upload=upload(components_csv([_part("德州仪器", "LM1")]), "p.csv"),
    )
    jobs.run_job(str(job.id))
    part = Component.objects.get(organization=org)
    assert (part.manufacturer, part.manufacturer_key) == ("Texas Instruments", "TEXASINSTRUMENTS")
