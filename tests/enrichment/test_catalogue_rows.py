"""Component rows to COPY records: the column-at-a-time ``check_batch`` against ``check`` row
by row, and the COPY text the validator process builds from them. Pure code, no database."""

from __future__ import annotations

import json
import random

import pytest

from enrichment import matching
from enrichment.catalogue import (
    _PACKAGING_END,
    COPY_COLUMNS,
    STAGE_COLUMNS,
    ComponentPlan,
    SharedNorms,
    _breaks_json,
    _lines_matching,
    _normalized,
    parse_breaks,
)
from imports.pipeline.copy_text import values_of
from imports.pipeline.validation import RowError

HEADER = [
    "Manufacturer", "MPN", "Description", "Category", "Package", "Lifecycle", "Datasheet",
    "Stock", "MOQ", "Unit Price", "Currency", "Price Breaks",
]  # fmt: skip
CHOICES = [
    ["Texas Instruments", "TI", " ti ", "Nexperia", "", "x" * 201, "Fairchild"],
    ["LM358D", " bas16j,115 ", "IRF540N#PBF", "TPS7A4700RGWR/TR", "", "--", "M" * 101,
     "1.5SMC6.8CA", "ABß-TR", "straße"],
    ["Dual op amp", "tab\there", "back\\slash", "", "  padded  "],
    ["Amplifiers", "", "c" * 201],
    ["SOIC-8", "", "p" * 101],
    ["active", "Active", "", "EOL", "last_time_buy", "last-time-buy", "LTB", "dead", "obsolete"],
    ["https://x.com/a.pdf", "", "HTTP://X.COM", "ftp://x", "https://" + "u" * 500],
    ["5000", "", "0", "5,000", "-3", "007", "1.0", "1.5", "9" * 19, "abc"],
    ["1", "", "0", "2147483648", "10", "01"],
    ["0.20", "", "1,5", "1.1234567", "abc", "-1", "123456789", "0.000001", "10.000000"],
    ["USD", "", "eur", "ZZZ"],
    ["", "1:0.10;100:0.05", "100:0.05;1:0.10", "1:0.10; 100:0.05", "1-0.1", "01:0.1",
     "0:0.1", "1:0.10;", "10:1;5:2;5:3", "1:123456789012"],
]  # fmt: skip


def _rows(n: int, seed: int) -> list[list[str]]:
    rnd = random.Random(seed)
    # mostly one of each column's first two (good) values, so that many rows are clean and
    # take the column path, the others anything
    rows = [[rnd.choice(c if rnd.random() < 0.15 else c[:2]) for c in CHOICES] for _ in range(n)]
    rows[3] = rows[3][:5]  # a short row
    rows[4] = [*rows[4], "extra"]  # a long row
    return rows


def _checker():
    aliases = {"TI": "Texas Instruments", "FAIRCHILD": "onsemi"}
    return ComponentPlan(aliases).checker(HEADER, 1000)


def test_check_batch_is_check_row_by_row():
    checker = _checker()
    validator = checker.validator
    for seed in range(20):
        rows = _rows(300, seed)
        numbers = list(range(2, 302))
        checked = checker(numbers, rows)
        expected = [validator.check(n, list(r)) for n, r in zip(numbers, rows, strict=True)]
        assert checked.errors == [e for e in expected if isinstance(e, RowError)]
        clean = [e for e in expected if not isinstance(e, RowError)]
        assert checked.numbers == [int(r[0]) for r in clean]
        assert [tuple(r) for r in zip(*checked.columns, strict=True)] == clean
        assert 30 < len(clean) < 270 and checked.errors


def test_all_good_rows_take_the_column_path_and_become_copy_lines():
    rows = [
        ["TI", "LM358D", "Dual op amp", "Amplifiers", "SOIC-8", "active",
         "https://ti.com/lm358.pdf", "5000", "1", "", "USD", "100:0.12;1:0.20"],
        ["Nexperia", "BAS16J,115", "tab\there", "", "", "", "", "", "", "0.02", "", ""],
        ["Vishay", "CRCW0805", "", "", "", "", "", "", "", "", "", ""],  # no price at all
        ["Bourns", "3296W", "back\\slash", "", "", "", "", "", "", "", "", ""],
    ]  # fmt: skip
    checker = _checker()
    checked = checker([2, 3, 4, 5], rows)
    assert checked.errors == [] and checked.numbers == [2, 3, 4, 5]
    records = dict(zip(STAGE_COLUMNS, map(tuple, checked.columns), strict=True))
    assert records["manufacturer"][:2] == ("Texas Instruments", "Nexperia")
    assert records["mpn_base"][:2] == ("LM358D", "BAS16J")
    # the first break when none is given; none at all: no price
    assert records["unit_price"] == ("0.20", "0.02", "", "")
    # as the file gives them (readers sort): no sort a row on the way in
    assert json.loads(records["price_breaks"][0]) == [[100, "0.12"], [1, "0.20"]]
    assert records["price_breaks"][1] == "[]"
    assert (records["lifecycle"][:2], records["stock"][:2], records["moq"][:2]) == (
        ("active", "unknown"),
        ("5000", "0"),
        ("1", "1"),
    )
    batch = checker.batch_of("42", checked)
    assert batch.row_numbers == [2, 3, 4, 5]
    assert batch.keys == ["LM358D", "BAS16J,115", "CRCW0805", "3296W"]
    first, second, no_price, escaped = batch.lines
    # the file's row number stays out of the line: the same lines COPY into the catalogue
    assert first.startswith("42\tTexas Instruments\tLM358D\tTEXASINSTRUMENTS\t")
    assert second.count("\t") == len(COPY_COLUMNS) and "tab\\there" in second
    assert values_of(second, len(COPY_COLUMNS))[6] == "tab\there"
    price = COPY_COLUMNS.index("unit_price") + 1
    # no price is COPY's null, never escaped: beside clean values and beside escaped ones
    assert no_price.split("\t")[price] == "\\N" and no_price.count("\t") == len(COPY_COLUMNS)
    assert escaped.split("\t")[price] == "\\N" and "back\\\\slash" in escaped
    assert values_of(escaped, len(COPY_COLUMNS))[6] == "back\\slash"
    assert values_of(escaped, len(COPY_COLUMNS))[price - 1] == ""


def test_the_column_passes_give_what_each_value_would_alone():
    """``check_batch``'s whole-column regex and replace passes against the per-value
    functions they stand for, on random part numbers (packaging suffixes, packing codes,
    punctuation, non-ASCII) and random clean price breaks, adjacent empty cells included."""
    rnd = random.Random(5)
    pieces = [
        "LM",
        "358",
        "D",
        "-",
        ".",
        "/",
        "#",
        ",",
        "115",
        "Ä",
        " ",
        "tr",
        *matching.PACKAGING_SUFFIXES,
    ]
    for _ in range(50):
        mpns = ["".join(rnd.choices(pieces, k=rnd.randint(0, 5))) for _ in range(200)]
        keys = [m.strip().upper() for m in mpns]
        # the column pass takes the exact keys (upper-cased once, in check_batch)
        assert _normalized(keys) == list(map(matching.normalize_mpn, mpns))
        assert list(_lines_matching(_PACKAGING_END, keys)) == [
            i
            for i, k in enumerate(keys)
            if k.endswith(matching.PACKAGING_SUFFIXES) or "," in k[-4:]
        ]
        breaks = [
            ";".join(f"{rnd.randint(1, 10**6)}:{rnd.randint(0, 999)}.{rnd.randint(0, 99)}"
                     for _ in range(rnd.choice([0, 0, 1, 2, 3])))
            for _ in range(200)
        ]  # fmt: skip
        assert list(map(json.loads, _breaks_json(breaks))) == list(map(parse_breaks, breaks))
    # a value that holds a newline of its own: the passes fall back to one value at a time
    odd = ["AB-1\nC", "", "X,115"]
    assert _normalized(odd) == ["AB1C", "", "X115"]
    assert list(_lines_matching(_PACKAGING_END, odd)) == [2]


def _shared_exactly(keys: list[str]) -> set[str]:
    """What grouping the catalogue finds: normalized MPNs that different keys share."""
    groups: dict[str, set[str]] = {}
    for key in keys:
        groups.setdefault(matching.normalize_mpn(key), set()).add(key)
    return {norm for norm, members in groups.items() if len(members) > 1}


def test_a_file_s_shared_normalized_mpns_are_all_among_its_candidates():
    """Every group of different keys is found, whichever rows and batches its members come in;
    a candidate is at least a normalized MPN that two rows have."""
    rnd = random.Random(3)
    for _ in range(200):
        keys = ["".join(rnd.choice("AB1-.") for _ in range(rnd.randint(1, 4))) for _ in range(60)]
        keys = [k for k in keys if matching.normalize_mpn(k)]
        groups = SharedNorms()
        at = 0
        while at < len(keys):  # batches of any size, as the validator cuts them
            size = rnd.randint(1, 9)
            batch = keys[at : at + size]
            groups.add(batch, [matching.normalize_mpn(k) for k in batch])
            at += size
        candidates = groups.shared()
        norms = [matching.normalize_mpn(k) for k in keys]
        assert _shared_exactly(keys) <= set(candidates)
        assert all(norms.count(c) > 1 for c in candidates)
        assert candidates == sorted(candidates)


def test_the_candidates_leave_out_what_cannot_be_shared():
    groups = SharedNorms()
    keys = ["1.5SMC68CA", "LM358D", "BAS16-J", "1.5SMC6.8CA", "AB-1", "AB.1", "XY-2", "XY-2"]
    groups.add(keys, [matching.normalize_mpn(k) for k in keys])
    groups.add(["LM358D", "CD-3"], ["LM358D", "CD3"])  # plain keys never share with themselves
    # XY2: the same key twice (two makers), a candidate the flagging finds unshared
    assert groups.shared() == ["15SMC68CA", "AB1", "XY2"]


def test_a_file_too_large_to_keep_has_no_candidates_at_all():
    few_rows, few_chars = SharedNorms(), SharedNorms()
    few_rows.MAX_ROWS, few_chars.MAX_CHARS = 3, 6
    for groups in (few_rows, few_chars):
        groups.add(["A-1", "A1"], ["A1", "A1"])
        assert groups.shared() == ["A1"]
        groups.add(["B-2", "C-3"], ["B2", "C3"])
        assert groups.shared() is None
        groups.add(["D-4"], ["D4"])
        assert groups.shared() is None


def test_too_many_candidates_are_none_and_a_later_import_gathers_nothing():
    groups = SharedNorms()
    groups.MAX_SHARED = 1
    groups.add(["A-1", "A1", "B-2", "B.2"], ["A1", "A1", "B2", "B2"])
    assert groups.shared() is None
    checker = ComponentPlan({}, gather_groups=False).checker(HEADER, 10)
    checker([2], [["Nexperia", "A-1", *[""] * 10]])
    assert checker.groups is None and checker.summary() is None


def test_the_checker_gathers_the_groups_of_its_clean_rows_only():
    checker = _checker()
    good = ["Nexperia", "", "", "", "", "", "", "", "", "", "", ""]
    rows = [
        [good[0], "1.5SMC6.8CA", *good[2:]],
        [good[0], "EF-4", *good[2:7], "lots", *good[8:]],  # a row error: not in the catalogue
        [good[0], "1.5smc68ca", *good[2:]],
        [good[0], "EF4", *good[2:]],
    ]
    checked = checker([2, 3, 4, 5], rows)
    assert [e.row_number for e in checked.errors] == [3]
    assert checker.summary() == ["15SMC68CA"]


@pytest.mark.parametrize(
    "keys",
    [
        ["1.5SMC6.8CA", "PIC18F4550-I/PT", "RC0603FR-0710KL", "BAS16J,115", "#-/", "A B\tC"],
        ["STRASSE-1", "ÄÖÜ-2", "Ω-3", "LM358D"],  # not ASCII: the regex path
        ["".join(map(chr, range(32, 127)))],  # every printable ASCII character
        [chr(b) for b in range(1, 128) if b != 10],  # every ASCII character but the newline
    ],
)
def test_a_column_s_normalized_keys_are_each_key_s(keys):
    """``_normalized`` takes a column of exact keys (upper case) and gives each MPN's
    normalized key, through bytes for an ASCII column and the regex for any other."""
    exact = [matching.exact_key(k) for k in keys]
    assert _normalized(exact) == [matching.normalize_mpn(k) for k in keys]
