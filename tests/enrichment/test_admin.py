"""The admin pages of the catalogue, aliases, projects, BOMs, lines and learned choices."""

from __future__ import annotations

import html

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from enrichment import services
from enrichment.catalogue_import import catalogue_loaded
from enrichment.models import BomLine, Catalogue, Component, LearnedMatch, ManufacturerAlias
from imports.models import Role
from tests.fixtures.accounts import member
from tests.fixtures.enrichment import bom_csv, make_component

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, org):
    client.force_login(member(org, "ada", Role.ADMIN, is_staff=True, is_superuser=True))
    return client


def test_every_enrichment_admin_page_renders(admin_client, org, operator, catalogue):
    bom, _ = services.bom_create(
        organization=org,
        user=operator,
        upload=SimpleUploadedFile("b.csv", bom_csv([("U1", "1", "LM358D", "TI", "", "")])),
    )
    line = BomLine.objects.get(bom=bom)
    component = Component.objects.filter(organization=org).first()
    alias = ManufacturerAlias.objects.filter(alias="TI").first()
    for model, obj in (
        ("component", component),
        ("manufactureralias", alias),
        ("project", None),
        ("bom", bom),
        ("bomline", line),
        ("learnedmatch", None),
        ("catalogue", None),
    ):
        assert admin_client.get(f"/admin/enrichment/{model}/").status_code == 200, model
        if obj is not None:
            page = admin_client.get(f"/admin/enrichment/{model}/{obj.pk}/change/")
            assert page.status_code == 200, model


def test_component_search_is_by_normalized_mpn_prefix(admin_client, catalogue):
    page = admin_client.get("/admin/enrichment/component/?q=1.5smc").content.decode()
    assert "1.5SMC68CA" in page and "1.5SMC6.8CA" in page and "LM358D" not in page


def test_an_organizations_own_alias_wins_over_the_built_in_one(org, other_org):
    from enrichment.selectors import alias_map

    ManufacturerAlias.objects.create(organization=org, alias="TI", canonical="Tiny Inc")
    assert alias_map(organization_id=org.id)["TI"] == "Tiny Inc"
    assert alias_map(organization_id=other_org.id)["TI"] == "Texas Instruments"


def test_an_alias_added_in_the_admin_applies_to_the_parts_already_catalogued(
    admin_client, org, other_org
):
    from enrichment.selectors import catalogue_version

    mine = make_component(org, "Fairchild Semi", "FQP30N06L")
    twice = make_component(org, "Fairchild Semi", "2N7000")
    chosen = LearnedMatch.objects.create(
        organization=org, mpn_key="FQP30N06", manufacturer_key="FAIRCHILDSEMI", component=mine
    )
    make_component(org, "onsemi", "2N7000")  # the same part from the canonical maker
    theirs = make_component(other_org, "Fairchild Semi", "FQP30N06L")
    before = catalogue_version(organization_id=org.id)
    resp = admin_client.post(
        "/admin/enrichment/manufactureralias/add/",
        {"organization": org.pk, "alias": "Fairchild Semi", "canonical": "onsemi"},
        follow=True,
    )
    assert resp.status_code == 200
    page = resp.content.decode()
    assert "1 catalogued part(s) under &#x27;Fairchild Semi&#x27; now read as" in page
    assert "1 part(s) left under &#x27;Fairchild Semi&#x27;" in page
    mine.refresh_from_db()
    assert (mine.manufacturer, mine.manufacturer_key) == ("onsemi", "ONSEMI")
    twice.refresh_from_db()
    assert twice.manufacturer == "Fairchild Semi"  # it would be the onsemi 2N7000 again
    theirs.refresh_from_db()
    assert theirs.manufacturer == "Fairchild Semi"  # another organization's alias is its own
    assert catalogue_version(organization_id=org.id) == before + 1
    chosen.refresh_from_db()  # lines naming the alias now ask by the canonical maker's key
    assert chosen.manufacturer_key == "ONSEMI"

    # a line naming the canonical maker finds the part at once
    from enrichment.enrich import LineInput, Matcher
    from enrichment.selectors import alias_map

    matcher = Matcher(organization_id=org.id, aliases=alias_map(organization_id=org.id))
    (result,) = matcher.match([LineInput(1, "FQP30N06L", "onsemi", 1, False)])
    assert (result.decision.status, result.decision.component.id) == ("matched", mine.id)


def test_a_built_in_alias_edited_in_the_admin_applies_where_no_own_alias_overrides_it(
    admin_client, org, other_org
):
    ManufacturerAlias.objects.create(organization=other_org, alias="Philips", canonical="Philips")
    mine = make_component(org, "Philips", "BC547")
    theirs = make_component(other_org, "Philips", "BC547")
    resp = admin_client.post(
        "/admin/enrichment/manufactureralias/add/",
        {"organization": "", "alias": "Philips", "canonical": "NXP"},
    )
    assert resp.status_code == 302
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.manufacturer, theirs.manufacturer) == ("NXP", "Philips")


def _component_form(org, mpn: str, maker: str = "Texas Instruments") -> dict:
    return {
        "organization": org.pk,
        "manufacturer": maker,
        "mpn": mpn,
        "description": "",
        "category": "",
        "package": "",
        "lifecycle": "active",
        "datasheet_url": "",
        "stock": 0,
        "moq": 1,
        "unit_price": "",
        "currency": "USD",
        "price_breaks": "[]",
        "alternates": "[]",
    }


@pytest.mark.parametrize(
    ("mpn", "message"),
    [
        ("lm358d", "already has this part"),  # the same key as LM358D
        ("ß" * 60, "longer than 100 characters"),  # 120 characters upper-cased
        ("--", "no letters or digits"),
    ],
)
def test_a_component_the_catalogue_would_refuse_is_a_form_error(admin_client, org, mpn, message):
    make_component(org, "Texas Instruments", "LM358D")
    resp = admin_client.post("/admin/enrichment/component/add/", _component_form(org, mpn))
    assert resp.status_code == 200
    assert message in resp.content.decode()
    assert Component.objects.filter(organization=org).count() == 1


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        ('[[100, "0,05"]]', "Price 1 of the price breaks, &#x27;0,05&#x27;, is not a plain number"),
        ('{"1": "0.10"}', "Price breaks are a list of [quantity, &quot;unit price&quot;] pairs"),
        ('[[1, "0.10"], ["x", "0.05"]]', "Quantity 2 of the price breaks, &#x27;x&#x27;"),
        ('[[1, "100000000"]]', "is too large (at most 99999999)"),
    ],
)
def test_price_breaks_an_enrichment_could_not_read_are_a_form_error(
    admin_client, org, breaks, message
):
    form = {**_component_form(org, "LM358D"), "price_breaks": breaks}
    resp = admin_client.post("/admin/enrichment/component/add/", form)
    assert resp.status_code == 200
    assert message in resp.content.decode()
    assert not Component.objects.filter(organization=org).exists()


def test_price_breaks_given_as_numbers_are_stored_as_an_import_stores_them(admin_client, org):
    form = {**_component_form(org, "LM358D"), "price_breaks": "[[1, 0.1], [100, 0.05]]"}
    assert admin_client.post("/admin/enrichment/component/add/", form).status_code == 302
    assert Component.objects.get(organization=org).price_breaks == [[1, "0.1"], [100, "0.05"]]


def test_a_component_added_in_the_admin_gets_its_keys(admin_client, org, other_org):
    make_component(other_org, "Texas Instruments", "LM358D")  # another organization's: no clash
    resp = admin_client.post("/admin/enrichment/component/add/", _component_form(org, "lm358d"))
    assert resp.status_code == 302
    part = Component.objects.get(organization=org)
    assert (part.mpn_key, part.mpn_norm, part.manufacturer_key) == (
        "LM358D",
        "LM358D",
        "TEXASINSTRUMENTS",
    )


def test_editing_and_deleting_a_component_in_the_admin_takes_its_groups_flags_again(
    admin_client, org
):
    """Only the old and the new normalized MPN's groups can change; both are taken again,
    and the catalogue gets a new version each time."""
    a = make_component(org, "Littelfuse", "1.5SMC68CA")
    b = make_component(org, "Littelfuse", "1.5SMC6.9CA")
    catalogue_loaded(org.id)
    assert not Component.objects.filter(organization=org, mpn_norm_shared=True).exists()
    version = Catalogue.objects.get(organization=org).version

    # b renamed into a's group: both flagged
    form = _component_form(org, "1.5SMC6.8CA", maker="Littelfuse")
    assert admin_client.post(f"/admin/enrichment/component/{b.pk}/change/", form).status_code == 302
    a.refresh_from_db(), b.refresh_from_db()
    assert a.mpn_norm_shared and b.mpn_norm_shared
    assert Catalogue.objects.get(organization=org).version == version + 1

    # b deleted: a is alone in its group again
    resp = admin_client.post(f"/admin/enrichment/component/{b.pk}/delete/", {"post": "yes"})
    assert resp.status_code == 302
    a.refresh_from_db()
    assert not a.mpn_norm_shared
    assert Catalogue.objects.get(organization=org).version == version + 2

    # and the bulk delete action does the same for each part it deletes
    c = make_component(org, "Littelfuse", "1.5SMC6.8CA")
    catalogue_loaded(org.id)
    a.refresh_from_db()
    assert a.mpn_norm_shared
    resp = admin_client.post(
        "/admin/enrichment/component/",
        {"action": "delete_selected", "_selected_action": [c.pk], "post": "yes"},
    )
    assert resp.status_code == 302
    a.refresh_from_db()
    assert not a.mpn_norm_shared

    # a part renamed out of a's group: its old group is taken again too, and a is alone
    d = make_component(org, "Littelfuse", "1.5SMC6.8CA")
    catalogue_loaded(org.id)
    a.refresh_from_db()
    assert a.mpn_norm_shared
    form = _component_form(org, "SMBJ5.0A", maker="Littelfuse")
    assert admin_client.post(f"/admin/enrichment/component/{d.pk}/change/", form).status_code == 302
    a.refresh_from_db(), d.refresh_from_db()
    assert not a.mpn_norm_shared and not d.mpn_norm_shared


def test_a_component_added_in_the_admin_takes_its_maker_through_the_aliases(admin_client, org):
    """As an import does: ``TI`` is Texas Instruments, so the part is the one the catalogue
    already has (a form error), and a new one is stored under the canonical name."""
    make_component(org, "Texas Instruments", "LM358D")
    resp = admin_client.post(
        "/admin/enrichment/component/add/", _component_form(org, "LM358D", "TI")
    )
    assert resp.status_code == 200 and "already has this part" in resp.content.decode()
    resp = admin_client.post(
        "/admin/enrichment/component/add/", _component_form(org, "LM324", "TI")
    )
    assert resp.status_code == 302
    assert Component.objects.get(organization=org, mpn="LM324").manufacturer == "Texas Instruments"


@pytest.mark.parametrize(
    ("organization", "alias", "taken"),
    [
        (None, "TI", "is already in the built-in list"),  # the built-in one exists
        ("org", "T.I.", "is already in this organization"),  # the same key as the org's TI
    ],
)
def test_an_alias_the_list_already_has_is_a_form_error(
    admin_client, org, organization, alias, taken
):
    """Before: the uniqueness is on a key no form shows, so the second one was a 500."""
    ManufacturerAlias.objects.create(organization=org, alias="TI", canonical="Texas Instruments")
    before = ManufacturerAlias.objects.count()
    resp = admin_client.post(
        "/admin/enrichment/manufactureralias/add/",
        {"organization": org.pk if organization else "", "alias": alias, "canonical": "TI Inc"},
    )
    assert resp.status_code == 200
    assert taken in resp.content.decode()
    assert ManufacturerAlias.objects.count() == before


def test_an_alias_with_no_letters_or_digits_is_a_form_error(admin_client, org):
    resp = admin_client.post(
        "/admin/enrichment/manufactureralias/add/",
        {"organization": org.pk, "alias": "--", "canonical": "Texas Instruments"},
    )
    assert resp.status_code == 200
    assert "at least one letter or digit" in resp.content.decode()


def test_a_line_s_results_are_not_free_json_in_the_admin(admin_client, org):
    """Candidates, warnings and notes are what runs and resolving write; typed in as free JSON
    they broke the lines API (a candidate of [1] was a 500)."""
    bom, _ = services.bom_create(
        organization=org,
        user=None,
        upload=SimpleUploadedFile("b.csv", bom_csv([("R1", "1", "X1", "", "", "")])),
        name="b",
    )
    line = BomLine.objects.get(bom=bom)
    page = admin_client.get(f"/admin/enrichment/bomline/{line.pk}/change/").content.decode()
    for field in ("candidates", "warnings", "notes"):
        assert f'name="{field}"' not in page, field


@pytest.mark.parametrize(
    "mpn_key, maker_key, problem",
    [
        ("LM358D", "texas instruments", "A manufacturer key is the maker's letters and digits"),
        ("ῷ" * 600, "", "An MPN key is at most 1,200 bytes"),
    ],
)
def test_a_learned_choice_the_learned_tier_could_not_use_is_refused_in_the_admin(
    admin_client, org, catalogue, mpn_key, maker_key, problem
):
    """The admin form checks the keys as the database does: a 600-character MPN key of
    three-byte characters would not fit the unique index (a 500 before), and a maker key the
    learned tier never asks for is refused with what it should look like."""
    component = catalogue[("STMicroelectronics", "LM358D")]
    resp = admin_client.post(
        "/admin/enrichment/learnedmatch/add/",
        {
            "organization": org.id,
            "mpn_key": mpn_key,
            "manufacturer_key": maker_key,
            "component": component.id,
        },
    )
    assert resp.status_code == 200 and problem in html.unescape(resp.content.decode())
    assert not LearnedMatch.objects.exists()
    resp = admin_client.post(
        "/admin/enrichment/learnedmatch/add/",
        {
            "organization": org.id,
            "mpn_key": "LM358D",
            "manufacturer_key": "STMICROELECTRONICS",
            "component": component.id,
        },
    )
    assert resp.status_code == 302
    assert LearnedMatch.objects.get().manufacturer_key == "STMICROELECTRONICS"
