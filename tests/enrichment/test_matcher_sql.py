"""The set-based tiers against a real catalogue in PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
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
    assert pic.notes == [
        "Matched on letters and digits: the line's PIC18F4550I/PT is catalogued as PIC18F4550-I/PT."
    ]

    near = got["RC0603FR-0733KL"].decision
    assert (near.status, near.tier) == ("ambiguous", "trigram")
    assert near.candidates[0].mpn == "RC0603FR-0710KL" and 0 < near.candidates[0].score < 1

    assert got["ZZZ-NOT-THERE-9"].decision.status == "not_found"
    lt = got["LT1761ES5-5#TRPBF"]
    assert lt.decision.status == "matched"
    assert lt.warnings == ("Lifecycle is eol, not active.", "Stock 10 is short of the 100 needed.")
    assert got["ANYTHING"].decision.status == "skipped"


def test_a_shared_normalized_key_never_matches_even_with_the_maker_of_one_part(org):
    make_component(org, "Littelfuse", "SMBJ5.0A")
    make_component(org, "Vishay", "SMBJ50A")
    got = match(org, ("smbj-50a", "Vishay", 1, False), ("SMBJ50A", "Vishay", 1, False))
    shared = got["smbj-50a"].decision
    assert (shared.status, shared.tier, shared.component) == ("ambiguous", "normalized", None)
    assert {c.mpn for c in shared.candidates} == {"SMBJ5.0A", "SMBJ50A"}
    assert "share this normalized part number" in shared.notes[0]
    exact = got["SMBJ50A"].decision  # as written: the exact tier tells them apart
    assert (exact.status, exact.tier, exact.component.mpn) == ("matched", "exact", "SMBJ50A")


def test_a_key_found_only_from_other_makers_goes_on_to_the_next_tiers(org):
    make_component(org, "NXP", "BAS16J,115")
    make_component(org, "Nexperia", "BAS16J")
    got = match(org, ("BAS16J,115", "Nexperia", 1, False), ("bas16j,115", "Vishay", 1, False))
    # the packaging tier finds it from the line's maker
    nexperia = got["BAS16J,115"].decision
    assert (nexperia.status, nexperia.tier) == ("matched", "packaging")
    assert (nexperia.component.manufacturer, nexperia.component.mpn) == ("Nexperia", "BAS16J")
    # no tier finds it from the line's maker: the first tier's outcome stands
    vishay = got["bas16j,115"].decision
    assert (vishay.status, vishay.tier, vishay.component) == ("ambiguous", "exact", None)
    assert [(c.manufacturer, c.mpn) for c in vishay.candidates] == [("NXP", "BAS16J,115")]
    assert vishay.notes == ["The catalogue has this part only from NXP, not from the line's maker."]


def test_a_key_other_makers_share_lets_a_later_tier_find_the_line_s_maker(org):
    make_component(org, "NXP", "BAS16J,115")
    make_component(org, "Diodes Incorporated", "BAS16J.115")  # the same normalized key
    make_component(org, "Nexperia", "BAS16J")
    got = match(org, ("BAS16J,115", "Nexperia", 1, False), ("BAS16J;115", "", 1, False))
    nexperia = got["BAS16J,115"].decision
    assert (nexperia.status, nexperia.tier) == ("matched", "packaging")
    assert nexperia.component.manufacturer == "Nexperia"
    shared = got["BAS16J;115"].decision  # no maker on the line: the shared key decides
    assert (shared.status, shared.tier) == ("ambiguous", "normalized")


@pytest.mark.parametrize("written", ["IRF540N", "irf540n/tr", "IRF540N#TRPBF"])
def test_packaging_finds_the_part_catalogued_with_its_finish_not_its_longer_siblings(org, written):
    """The packaging tier reads the parts whose normalized MPN begins with the line's key and
    keeps those whose own key without packaging is the line's: IRF540NS begins the same but is
    another part."""
    pbf = make_component(org, "Infineon", "IRF540N#PBF", stock=100)
    make_component(org, "Infineon", "IRF540NS", stock=100)
    make_component(org, "Infineon", "IRF540N-BULK2", stock=100)  # no known suffix: its own part
    d = match(org, (written, "", 1, False))[written].decision
    assert (d.status, d.tier, d.component.id) == ("matched", "packaging", pbf.id)
    assert d.candidates == []


@pytest.mark.parametrize(
    ("catalogued", "written"),
    [
        ("LM317T", "LM317T/NOPB"),  # TI's lead-free mark, as #PBF
        ("LM317T/NOPB", "lm317t"),
        ("LT1763CS8#TRMPBF", "LT1763CS8"),  # Analog Devices' tape and reel, mini, lead-free
        ("LT1763CS8", "LT1763CS8#TRM"),
    ],
)
def test_lead_free_and_mini_reel_marks_are_packaging(org, catalogued, written):
    part = make_component(org, "Texas Instruments", catalogued, stock=10)
    d = match(org, (written, "", 1, False))[written].decision
    assert (d.status, d.tier, d.component.id) == ("matched", "packaging", part.id)


def test_packaging_of_a_two_character_part_number_looks_up_only_that_number(org):
    """A key of one or two characters would range over much of a catalogue: it is looked up as
    it is (a part catalogued under exactly that number still matches)."""
    ab = make_component(org, "Vishay", "AB")
    make_component(org, "Vishay", "AB#PBF")
    d = match(org, ("AB-TR", "", 1, False))["AB-TR"].decision
    assert (d.status, d.tier, d.component.id) == ("matched", "packaging", ab.id)
    assert match(org, ("AC-TR", "", 1, False))["AC-TR"].decision.status == "not_found"


def test_learned_choice_matches_a_later_line(org, catalogue, operator):
    st = catalogue[("STMicroelectronics", "LM358D")]
    LearnedMatch.objects.create(organization=org, mpn_key="LM358D", component=st)
    d = match(org, ("LM358D", "", 1, False))["LM358D"].decision
    assert (d.status, d.tier, d.component.id) == ("matched", "learned", st.id)


def test_learned_choices_pair_each_lines_mpn_with_its_own_maker(org, catalogue):
    """Same MPN, two makers the catalogue does not list: each line gets the choice learned for
    its own (MPN, maker) pair, whatever their order in the chunk."""
    from enrichment.matching import manufacturer_key

    ti = catalogue[("Texas Instruments", "LM358D")]
    st = catalogue[("STMicroelectronics", "LM358D")]
    for maker, part in (("Reseller A", ti), ("Reseller B", st)):
        LearnedMatch.objects.create(
            organization=org, mpn_key="LM358D", manufacturer_key=manufacturer_key(maker),
            component=part,
        )  # fmt: skip
    lines = [
        LineInput(1, "LM358D", "Reseller B", 1, False),
        LineInput(2, "NOPE-1", "Reseller A", 1, False),
        LineInput(3, "LM358D", "Reseller A", 1, False),
    ]
    with transaction.atomic():
        got = Matcher(organization_id=org.id, aliases={}).match(lines)
    chosen = {
        r.line.id: (r.decision.tier, r.decision.component and r.decision.component.id) for r in got
    }
    assert chosen[1] == ("learned", st.id) and chosen[3] == ("learned", ti.id), chosen


def test_an_organization_without_learned_choices_asks_the_learned_tier_nothing(
    org, other_org, catalogue
):
    """Whether the organization has any learned choice is asked once a run; without one the
    tier's statement is skipped, and another organization's choices do not count."""
    st = catalogue[("STMicroelectronics", "LM358D")]
    LearnedMatch.objects.create(organization=other_org, mpn_key="LM358D", component=st)
    matcher = Matcher(organization_id=org.id, aliases={})
    lines = [LineInput(1, "LM358D", "", 1, False), LineInput(2, "NOPE-1", "", 1, False)]
    with transaction.atomic():
        got = matcher.match(lines)
        matcher.match(lines)  # a second chunk: not asked again
    assert matcher.any_learned is False and matcher.examined["learned"] == 0
    assert got[0].decision.status == "ambiguous"  # the other tenant's choice is not ours

    LearnedMatch.objects.create(organization=org, mpn_key="LM358D", component=st)
    matcher = Matcher(organization_id=org.id, aliases={})
    with transaction.atomic():
        got = matcher.match(lines)
    assert matcher.any_learned is True and matcher.examined["learned"] == 2
    assert (got[0].decision.tier, got[0].decision.component.id) == ("learned", st.id)


def test_another_tenants_catalogue_is_never_matched(org, other_org):
    make_component(other_org, "Texas Instruments", "TL071CP", stock=5)
    assert match(org, ("TL071CP", "", 1, False))["TL071CP"].decision.status == "not_found"


def test_one_statement_per_tier_not_per_line(org, catalogue):
    lines = [(f"NOPE{i:05d}XYZ", "", 1, False) for i in range(300)]
    lines += [("LM358D", "TI", 1, False)] * 300
    with CaptureQueriesContext(connection) as ctx:
        match(org, *lines)
    # a few SETs, then exact and normalized (one), packaging, learned, similar, not 600
    assert len(ctx.captured_queries) < 15


@pytest.mark.parametrize(
    "written",
    [
        "XC0603FR-0710KL",  # first character wrong: the look-alike ends the same
        "RC0603FR-0710K",  # last character missing: it begins the same, and sorts after
        "RC0603FR-0710KLX",  # one extra at the end: it sorts before
        "RC0603FR-0810KL",  # a digit in the middle
    ],
)
def test_near_miss_is_ambiguous_with_the_look_alike_proposed(org, catalogue, written):
    d = match(org, (written, "", 1, False))[written].decision
    assert (d.status, d.tier, d.component) == ("ambiguous", "trigram", None)
    assert d.candidates[0].mpn == "RC0603FR-0710KL"
    assert 0.45 <= d.candidates[0].score < 1


def test_look_alikes_rank_active_and_in_stock_before_the_closest(org):
    closest_eol = make_component(org, "TI", "TPS7A4700RGWR", "eol", stock=10**6, price="1.00")
    short = make_component(org, "TI", "TPS7A4700RGW", "active", stock=5, price="1.00")
    in_stock = make_component(org, "TI", "TPS7A4700RG", "active", stock=10**6, price="2.00")
    make_component(org, "Yageo", "RC0603FR-0710KL", stock=10**6)  # nothing like it
    d = match(org, ("TPS7A4700RGWT", "", 100, False))["TPS7A4700RGWT"].decision
    assert (d.status, d.tier) == ("ambiguous", "trigram")
    assert [c.id for c in d.candidates] == [in_stock.id, short.id, closest_eol.id]
    by_id = {c.id: c.score for c in d.candidates}
    assert by_id[closest_eol.id] > by_id[in_stock.id]  # ranked, not merely the closest first


def test_every_part_of_a_look_alike_is_proposed_not_only_the_nearest_index_rows(org):
    """The neighbour scans find look-alike normalized MPNs; every part that has one is then a
    candidate. Six makers catalogue one look-alike: the four index rows nearest the line
    are four of them, and the one that ranks first (the only active one) is not among them.
    Five of the six are proposed: the active one among them, whatever its id."""
    makers = ["Analog Devices", "Microchip", "Nexperia", "onsemi", "Renesas", "Vishay"]
    active = makers[0]
    parts = {  # the active one last: the newest id does not lose a tie of similarity
        m: make_component(org, m, "TPS7A4700RGWR", "active" if m == active else "eol")
        for m in [*makers[1:], active]
    }
    d = match(org, ("TPS7A4700RGWT", "", 1, False))["TPS7A4700RGWT"].decision
    assert (d.status, d.tier) == ("ambiguous", "trigram")
    assert len(d.candidates) == 5 and {c.mpn for c in d.candidates} == {"TPS7A4700RGWR"}
    assert d.candidates[0].id == parts[active].id


def test_an_unlike_part_number_is_not_found_with_no_candidates(org, catalogue):
    d = match(org, ("QQQ999ZZZ", "", 1, False))["QQQ999ZZZ"].decision
    assert (d.status, d.candidates) == ("not_found", [])


def test_the_neighbour_scans_read_indexes_alone(org):
    """Both directions of the look-alike scans are index-only once the catalogue is
    all-visible: forwards on the unique index, backwards on the index of the ``mpn_rev``
    column (an index on reverse(mpn_norm) cannot give the normalized MPN back: a heap page per
    neighbour). That index being partial is held by the flagging's plan test
    (test_component_import: a lookup by normalized MPN on a fresh organization's statistics
    took it for the unique index when it was not)."""
    from enrichment import enrich

    part = make_component(org, "Yageo", "RC0603FR-0710KL")
    part.refresh_from_db()
    assert part.mpn_rev == part.mpn_norm[::-1]  # generated by PostgreSQL
    with transaction.atomic(), connection.cursor() as cur:
        # what VACUUM tells the planner of a settled table: every page all-visible
        cur.execute(
            "SELECT pg_restore_relation_stats('schemaname', 'public', 'relname', "
            "'enrichment_component', 'relpages', 1000, 'reltuples', 100000::real, "
            "'relallvisible', 1000)"
        )
        cur.execute(enrich._PLAN_SETTINGS)
        cur.execute(
            "EXPLAIN " + enrich._SIMILAR_BY_NEIGHBOURS,
            {"keys": '["RC0603FR0710KX"]', "org": org.id, "threshold": 0.45},
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
    for index in ("component_mpn_rev", "component_unique_per_org"):
        assert plan.count(f"Index Only Scan using {index} ") == 1, plan
        assert plan.count(f"Index Only Scan Backward using {index} ") == 1, plan


def test_results_are_written_by_the_lines_primary_key_whatever_the_statistics(org):
    """The results' UPDATE joins a temp table without statistics to the lines: planned freely
    on a lines table of 22k rows it hashed the whole table for each chunk (every BOM's lines
    read to write 2,000). It probes the primary key line by line, as the server's own EXPLAIN
    of the very statement (auto_explain) shows."""
    from enrichment.enrich import LineResult, write_results
    from enrichment.matching import Decision
    from enrichment.models import Bom, BomLine

    bom = Bom.objects.create(organization=org, name="plan")
    lines = BomLine.objects.bulk_create(
        BomLine(bom=bom, line_number=n, mpn=f"P{n}", quantity=1) for n in range(1, 4)
    )
    results = [
        LineResult(LineInput(line.id, line.mpn, "", 1, False), Decision("not_found"))
        for line in lines
    ]
    plans: list[str] = []

    def keep(diagnostic) -> None:
        plans.append(diagnostic.message_primary or "")

    with transaction.atomic(), connection.cursor() as cur:
        try:
            with transaction.atomic():
                cur.execute("LOAD 'auto_explain'")
        except DatabaseError as exc:  # a role that may not load it (not the suite's own)
            pytest.skip(f"auto_explain cannot be loaded here: {exc}")
        cur.execute("SET LOCAL auto_explain.log_min_duration = 0")
        cur.execute("SET LOCAL client_min_messages = log")
        # a lines table the planner hashes whole when free (it scales the rows a page by the
        # table's real size: one page here): 2,000 rows
        cur.execute(
            "SELECT pg_restore_relation_stats('schemaname', 'public', 'relname', "
            "'enrichment_bomline', 'relpages', 1, 'reltuples', 2000::real)"
        )
        raw = connection.connection
        raw.add_notice_handler(keep)
        try:
            write_results(results, catalogue_version=7)
        finally:
            raw.remove_notice_handler(keep)
            cur.execute("SET LOCAL client_min_messages = notice")
    update = next(p for p in plans if "Update on enrichment_bomline" in p)
    assert "Index Scan using enrichment_bomline_pkey" in update, update
    assert "Index Cond: (id = r.id)" in update, update  # probed line by line
    assert "Seq Scan on enrichment_bomline" not in update, update
    assert set(bom.lines.values_list("match_status", "catalogue_version")) == {("not_found", 7)}


def test_results_keep_every_character_of_their_text_fields_and_their_numbers(org):
    """A chunk's results go to the database as COPY text built by hand: a backslash, a tab, a
    newline, a quote or a non-ASCII letter in a part's or a note's text arrives as it was, and
    the numbers, the nulls and the candidates as well."""
    from enrichment.enrich import LineResult, write_results
    from enrichment.matching import Candidate, Decision
    from enrichment.models import Bom, BomLine

    part = make_component(org, "Vishay", "CRCW0805\\10K0")
    other = make_component(org, "Yageo", "RC0805FR-0710KL")
    odd = 'https://example.com/a\\b\tc\nd\r.pdf?x="ü"'
    bom = Bom.objects.create(organization=org, name="text")
    matched, missing = BomLine.objects.bulk_create(
        BomLine(bom=bom, line_number=n, mpn=f"P{n}", quantity=10) for n in (1, 2)
    )
    chosen = Candidate(
        part.id, "Vishay", "VISHAY", part.mpn, "n\\r\td", None, Decimal("0.123456"),
        currency="E\tR", datasheet_url=odd,
    )  # fmt: skip
    notes = ['The line\'s CRCW0805\\10K0\t is "catalogued"\nas ü — ok.', "\\N"]
    results = [
        LineResult(
            LineInput(matched.id, matched.mpn, "", 10, False),
            Decision(
                "matched",
                "normalized",
                0.95,
                chosen,
                [Candidate(other.id, "Yageo", "YAGEO", other.mpn, score=0.6666666)],
                notes,
            ),
            unit_price=Decimal("0.123456"),
            extended_price=Decimal("1.23456"),
            warnings=("Stock \\N is short\t.",),
        ),
        LineResult(LineInput(missing.id, missing.mpn, "", 10, False), Decision("not_found")),
    ]
    with transaction.atomic():
        write_results(results, catalogue_version=3)
    matched.refresh_from_db()
    missing.refresh_from_db()
    assert (matched.match_status, matched.match_tier, matched.confidence) == (
        "matched",
        "normalized",
        0.95,
    )
    assert matched.component_id == part.id
    assert matched.candidates == [{"component_id": other.id, "score": 0.667}]
    assert (matched.lifecycle, matched.stock, matched.currency) == ("n\\r\td", None, "E\tR")
    assert matched.datasheet_url == odd
    assert (matched.unit_price, matched.extended_price) == (Decimal("0.123456"), Decimal("1.23456"))
    assert matched.warnings == ["Stock \\N is short\t."]
    assert matched.notes == notes
    assert matched.catalogue_version == 3
    assert (missing.match_status, missing.component_id) == ("not_found", None)
    assert missing.candidates == []
    assert (missing.stock, missing.unit_price, missing.extended_price) == (None, None, None)
    assert (missing.lifecycle, missing.currency, missing.datasheet_url) == ("", "", "")
    assert (missing.warnings, missing.notes) == ([], [])


@pytest.mark.parametrize("parts", [1_000, 20_000, 1_000_000])
def test_the_packaging_ranges_are_probed_key_by_key_whatever_the_catalogue_size(org, parts):
    """Each line's packaging range is an index range of its own. Joined freely, the planner
    could not estimate a range's rows, and for an organization of 20k parts it read the whole
    catalogue once and compared every part with every key (20,040 parts x 500 keys: 505 ms
    where the ranges took 1.4 ms, EXPLAIN ANALYZE)."""
    from enrichment import enrich

    make_component(org, "Nexperia", "BAS16J")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "SELECT pg_restore_relation_stats('schemaname', 'public', 'relname', "
            "'enrichment_component', 'relpages', %s, 'reltuples', %s::real)",
            [max(parts // 30, 1), parts],
        )
        cur.execute("ANALYZE enrichment_component (organization_id)")
        cur.execute(
            "SELECT pg_restore_relation_stats('schemaname', 'public', 'relname', "
            "'enrichment_component', 'relpages', %s, 'reltuples', %s::real)",
            [max(parts // 30, 1), parts],
        )
        cur.execute(enrich._PLAN_SETTINGS)
        keys = json.dumps([f"BAS{n}J" for n in range(500)])
        cur.execute("EXPLAIN " + enrich._BY_BASE, [keys, org.id])
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert "Join Filter" not in plan, plan
    # the range bounds the index scan itself (a Filter would read the organization per key)
    assert any(
        "Index Cond: ((organization_id = " in step and "~>=~ l.key" in step and "~<=~" in step
        for step in plan.splitlines()
    ), plan
    assert plan.index("Function Scan on json_array_elements_text") < plan.index("Index Scan"), plan
