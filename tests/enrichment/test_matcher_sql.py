"""The set-based tiers against a real catalogue in PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from enrichment import selectors
from enrichment.enrich import LineInput, Matcher
from enrichment.models import LearnedMatch
from tests.fixtures.enrichment import make_component

pytestmark = pytest.mark.django_db


def match(org, *lines):
    matcher = Matcher(organization_id=org.id, aliases=selectors.alias_map(organization_id=org.id))
    inputs = [
        LineInput(i, mpn, maker, qty, dnp) for i, (mpn, maker, qty, dnp) in enumerate(lines, 1)
    ]
    with transaction.atomic():
        return {r.line.mpn: r for r in matcher.match(inputs)}


def test_each_tier_decides_what_it_should(org, catalogue):
    got = match(
        org,
        ("lm358d", "TI", 250, False),  # exact, maker through the alias
        ("LM358D", "", 1, False),  # two makers, none given
        ("1.5SMC-68CA", "", 1, False),  # normalized key shared by two parts
        ("1.5SMC6.8CA", "", 1, False),  # exact tells them apart
        ("BAS16J,115", "Nexperia", 5000, False),  # packaging
        ("PIC18F4550I/PT", "", 10, False),  # normalized, only one part has that key
        ("RC0603FR-0733KL", "", 10, False),  # near miss: proposals only
        ("ZZZ-NOT-THERE-9", "", 1, False),
        ("LT1761ES5-5#TRPBF", "", 100, False),  # packaging, eol and short
        ("ANYTHING", "", 1, True),  # DNP
    )
    lm = got["lm358d"]
    assert (lm.decision.status, lm.decision.tier) == ("matched", "exact")
    assert lm.decision.component.manufacturer == "Texas Instruments"
    assert lm.unit_price == Decimal("0.12") and lm.extended_price == Decimal("30.00")

    assert got["LM358D"].decision.status == "ambiguous"
    assert len(got["LM358D"].decision.candidates) == 2

    collision = got["1.5SMC-68CA"].decision
    assert (collision.status, collision.tier) == ("ambiguous", "normalized")
    assert {c.mpn for c in collision.candidates} == {"1.5SMC68CA", "1.5SMC6.8CA"}
    assert got["1.5SMC6.8CA"].decision.component.mpn == "1.5SMC6.8CA"

    bas = got["BAS16J,115"]
    assert (bas.decision.status, bas.decision.tier) == ("matched", "packaging")
    assert bas.decision.confidence < 1 and bas.unit_price == Decimal("0.01")

    pic = got["PIC18F4550I/PT"].decision
    assert (pic.status, pic.tier, pic.component.mpn) == ("matched", "normalized", "PIC18F4550-I/PT")

    near = got["RC0603FR-0733KL"].decision
    assert (near.status, near.tier) == ("ambiguous", "trigram")
    assert near.candidates[0].mpn == "RC0603FR-0710KL" and 0 < near.candidates[0].score < 1

    assert got["ZZZ-NOT-THERE-9"].decision.status == "not_found"
    lt = got["LT1761ES5-5#TRPBF"]
    assert lt.decision.status == "matched"
    assert lt.warnings == ("Lifecycle is eol, not active.", "Stock 10 is short of the 100 needed.")
    assert got["ANYTHING"].decision.status == "skipped"


def test_learned_choice_matches_a_later_line(org, catalogue, operator):
    st = catalogue[("STMicroelectronics", "LM358D")]
    LearnedMatch.objects.create(organization=org, mpn_key="LM358D", component=st)
    d = match(org, ("LM358D", "", 1, False))["LM358D"].decision
    assert (d.status, d.tier, d.component.id) == ("matched", "learned", st.id)


def test_another_tenants_catalogue_is_never_matched(org, other_org):
    make_component(other_org, "Texas Instruments", "TL071CP", stock=5)
    assert match(org, ("TL071CP", "", 1, False))["TL071CP"].decision.status == "not_found"


def test_one_statement_per_tier_not_per_line(org, catalogue):
    lines = [(f"NOPE{i:05d}XYZ", "", 1, False) for i in range(300)]
    lines += [("LM358D", "TI", 1, False)] * 300
    with CaptureQueriesContext(connection) as ctx:
        match(org, *lines)
    # a few SETs, then exact, normalized, packaging, learned, similar (prefix, GIN), not 600
    assert len(ctx.captured_queries) < 15
