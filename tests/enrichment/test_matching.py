"""The matching rules alone: keys, tiers, ranking, prices, DNP marks (no database)."""

from __future__ import annotations

import doctest
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrichment import catalogue, matching
from enrichment.matching import Candidate, decide, normalize_mpn, strip_packaging


def test_the_doctests_hold():
    for module in (matching, catalogue):
        result = doctest.testmod(module)
        assert result.failed == 0
        assert result.attempted > 0


def part(id, mpn, maker="Littelfuse", **kw):
    return Candidate(id, maker, matching.manufacturer_key(maker), mpn, **kw)


def test_punctuation_collision_is_ambiguous_with_both_parts_as_candidates():
    a, b = part(1, "1.5SMC68CA"), part(2, "1.5SMC6.8CA")
    assert normalize_mpn(a.mpn) == normalize_mpn(b.mpn)
    d = decide("normalized", [a, b], mpn="1.5SMC 6.8CA")
    assert d.status == "ambiguous"
    assert {c.id for c in d.candidates} == {1, 2}
    assert d.component is None
    assert "1.5SMC6.8CA" in d.notes[0] and "1.5SMC68CA" in d.notes[0]


def test_the_exact_tier_still_tells_the_colliding_parts_apart():
    d = decide("exact", [part(2, "1.5SMC6.8CA")], mpn="1.5smc6.8ca")
    assert (d.status, d.component.id, d.confidence) == ("matched", 2, 1.0)


def test_nexperia_packing_code_is_packaging():
    assert strip_packaging("BAS16J,115") == "BAS16J"
    d = decide("packaging", [part(5, "BAS16J", "Nexperia")], mpn="BAS16J,115")
    assert d.status == "matched"
    assert d.confidence < 1.0
    assert "Packaging variant" in d.notes[0]


def test_microchip_package_suffix_is_not_packaging():
    assert strip_packaging("PIC18F4550-I/PT") == "PIC18F4550-I/PT"
    assert matching.packaging_key("PIC18F4550-I/PT") != matching.packaging_key("PIC18F4550-I/P")
    assert strip_packaging("ATMEGA328P-XF") == "ATMEGA328P-XF"


@pytest.mark.parametrize(
    "mpn, base",
    [
        ("LT1761ES5-5#TRPBF", "LT1761ES5-5"),
        ("IRF540N#PBF", "IRF540N"),
        ("TPS2051BDBVR-TR", "TPS2051BDBVR"),
        ("PESD5V0S1BA,215", "PESD5V0S1BA"),
        ("LM358D/TR", "LM358D"),
        ("TR", "TR"),  # a suffix alone is not stripped to nothing
    ],
)
def test_packaging_suffixes(mpn, base):
    assert strip_packaging(mpn) == base


def test_several_manufacturers_without_manufacturer_is_ambiguous_with_it_matched():
    ti = part(1, "LM358D", "Texas Instruments")
    st = part(2, "LM358D", "STMicroelectronics")
    assert decide("exact", [ti, st]).status == "ambiguous"
    d = decide("exact", [ti, st], manufacturer="TEXASINSTRUMENTS")
    assert (d.status, d.component.id) == ("matched", 1)


def test_a_manufacturer_the_catalogue_lacks_for_the_mpn_is_ambiguous_not_matched():
    d = decide("exact", [part(1, "LM358D", "Texas Instruments")], manufacturer="ONSEMI")
    assert d.status == "ambiguous"
    assert d.candidates[0].id == 1
    assert "Texas Instruments" in d.notes[0]


def test_trigram_proposals_are_never_accepted():
    near = part(1, "RC0603FR-0733KL", "Yageo", score=0.6)
    d = matching.decide_similar([near])
    assert d.status == "ambiguous" and d.component is None and d.tier == "trigram"


def test_candidates_rank_active_then_stock_then_price():
    cheap_eol = part(1, "X", "A", lifecycle="eol", stock=10**6, unit_price=Decimal("0.01"))
    short = part(2, "X", "B", lifecycle="active", stock=1, unit_price=Decimal("0.01"))
    pricey = part(3, "X", "C", lifecycle="active", stock=500, unit_price=Decimal("0.90"))
    cheap = part(4, "X", "D", lifecycle="active", stock=500, unit_price=Decimal("0.10"))
    assert [c.id for c in matching.rank([cheap_eol, short, pricey, cheap], 100)] == [4, 3, 2, 1]


def test_price_at_quantity_uses_the_breaks():
    breaks = ((1, Decimal("0.10")), (100, Decimal("0.05")))
    assert matching.unit_price_at(99, breaks, None) == Decimal("0.10")
    assert matching.unit_price_at(100, breaks, None) == Decimal("0.05")


@pytest.mark.parametrize("value", ["DNP", "dnf", "NF", "np", "Yes", "true", "x"])
def test_dnp_marks(value):
    assert matching.not_populated(value)


def test_fitted_column_is_the_opposite():
    assert matching.not_populated("No", fitted_column=True)
    assert not matching.not_populated("Yes", fitted_column=True)
    assert not matching.not_populated("", fitted_column=True)


@given(
    st.text(alphabet="ABCXYZabc0189-/#,. ", max_size=12),
    st.sampled_from(["", *matching.PACKAGING_SUFFIXES, ",115", ",215"]),
)
def test_the_packaging_key_is_a_prefix_of_the_normalized_mpn(body, suffix):
    """What lets the packaging tier read the ``mpn_norm`` index instead of one of its own."""
    mpn = body + suffix
    assert normalize_mpn(mpn).startswith(matching.packaging_key(mpn))
