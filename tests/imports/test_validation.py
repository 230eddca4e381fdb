"""Row rules as pure functions: every rule has a message a person can act on."""

from __future__ import annotations

from decimal import Decimal

import pytest

from imports.pipeline.validation import (
    FIELDS,
    CleanProduct,
    RowError,
    RowValidator,
    SeenSkus,
    barcode_ok,
    map_header,
)

HEADER = ["sku", "name", "price", "currency", "quantity", "barcode", "status"]


def check(values, header=HEADER, row=2):
    return RowValidator(map_header(header), 10).validate(row, values)


def test_clean_row():
    out = check(["AB-1", " Widget ", "12.5", "eur", "3", "4006381333931", "Draft"])
    assert isinstance(out, CleanProduct)
    assert (out.sku, out.name, out.price, out.currency, out.quantity, out.status) == (
        "AB-1",
        "Widget",
        Decimal("12.50"),
        "EUR",
        3,
        "draft",
    )


@pytest.mark.parametrize(
    "values,message",
    [
        (["", "W", "1", "", "", "", ""], "Row 2: sku is required"),
        (["A", "", "1", "", "", "", ""], "Row 2: name is required"),
        (["A" * 65, "W", "1", "", "", "", ""], "is longer than 64 characters"),
        (["A B", "W", "1", "", "", "", ""], "sku 'A B' may hold only letters, digits"),
        (["A", "W", "-1", "", "", "", ""], "Row 2: price '-1' must be 0 or more"),
        (["A", "W", "1.999", "", "", "", ""], "Row 2: price '1.999' has more than 2 decimals"),
        (["A", "W", "abc", "", "", "", ""], "Row 2: price 'abc' is not a number"),
        (["A", "W", "", "", "", "", ""], "Row 2: price is required"),
        (["A", "W", "1", "", "2.5", "", ""], "Row 2: quantity '2.5' is not a whole number"),
        (["A", "W", "1", "", "-2", "", ""], "Row 2: quantity '-2' must be 0 or more"),
        (["A", "W", "1", "EURO", "", "", ""], "Row 2: currency 'EURO' is not an ISO 4217 code"),
        (["A", "W", "1", "", "", "4006381333932", ""], "not a valid EAN-13 or UPC-A code"),
        (["A", "W", "1", "", "", "", "gone"], "Row 2: status 'gone' must be active or draft"),
        (["A", "W", "1"], "Row 2: has 3 values but the header has 7 columns"),
    ],
)
def test_row_rules(values, message):
    out = check(values)
    assert isinstance(out, RowError)
    assert message in out.message
    assert out.values == values


def test_several_problems_in_one_row_are_listed_together():
    out = check(["", "", "-1", "", "", "", ""])
    assert out.message == "Row 2: sku is required; name is required; price '-1' must be 0 or more"


def test_trailing_empty_cells_are_not_ragged():
    assert isinstance(check(["A", "W", "1", "", "", "", "", "", ""]), CleanProduct)


def test_repeated_sku_names_the_first_row():
    validator = RowValidator(map_header(HEADER), 10)
    assert isinstance(validator.validate(12, ["ABC-1", "W", "1", "", "", "", ""]), CleanProduct)
    out = validator.validate(40, ["ABC-1", "W", "2", "", "", "", ""])
    assert out.message == "Row 40: SKU 'ABC-1' repeats row 12"


def test_barcodes():
    assert barcode_ok("4006381333931")  # EAN-13
    assert barcode_ok("036000291452")  # UPC-A
    assert not barcode_ok("036000291453")
    assert not barcode_ok("12345")


def test_seen_skus_grows_and_remembers_rows():
    seen = SeenSkus(expected=10)
    for i in range(1, 5001):
        assert seen.add(f"S{i}", i + 1) == 0
    assert seen.add("S1", 9999) == 2
    assert seen.add("S5000", 9999) == 5001


def test_seen_skus_at_scale_has_no_false_repeats_and_finds_every_real_one():
    seen = SeenSkus(expected=200_000)
    assert all(seen.add(f"SKU-{i:08d}", i + 2) == 0 for i in range(200_000))
    assert [seen.add(f"SKU-{i:08d}", 999_999) for i in (0, 77_777, 199_999)] == [
        2,
        77_779,
        200_001,
    ]


def test_copy_lines_escape_what_copy_text_needs_and_read_back_exactly():
    from imports.pipeline.copy_text import SEPARATORS, CopyBatch, values_of

    validator = RowValidator(map_header(list(FIELDS)), 10)
    plain = ["A-1", "Anvil", "Heavy", "12.50", "EUR", "3", "", "Tools", "Acme", "draft"]
    tricky = ["A-2", "Tab\there", "two\nlines\r and C:\\dir \\N", "1", "", "", "", "", "", ""]
    checked = validator.check_batch((2, 3), (plain, tricky))
    batch = CopyBatch.of("42", checked.numbers, checked.columns)
    assert batch.row_numbers == [2, 3] and batch.keys == ["A-1", "A-2"]
    first, second = batch.lines
    assert first == "42\tA-1\tAnvil\tHeavy\t12.50\tEUR\t3\t\tTools\tAcme\tdraft\n"
    assert second.count("\t") == SEPARATORS and second.count("\n") == 1
    assert values_of(first) == plain
    assert values_of(second)[:3] == tricky[:3]
    assert len(batch.subset([1])) == 1 and batch.subset([1]).keys == ["A-2"]


def test_clean_values_are_what_postgresql_reads_and_other_scripts_digits_are_row_errors():
    validator = RowValidator(map_header(list(FIELDS)), 10)
    # Arabic-Indic digits: "12.50" and "3" to Python, not to PostgreSQL (nor to most people)
    arabic = ["A-1", "Lamp", "", "\u0661\u0662.\u0665\u0660", "EUR", "\u0663", "", "", "", ""]
    out = validator.check(2, arabic)
    assert isinstance(out, RowError)
    assert "price" in out.message and "quantity" in out.message and "0-9" in out.message
    plain = validator.check(3, ["A-2", "Lamp", "", "007.5", "", "0042", "", "", "", ""])
    assert plain[3:6] == ("007.5", "USD", "0042")  # plain ASCII goes as typed
    product = validator.validate(4, ["A-3", "Lamp", "", "7.5", "", "42", "", "", "", ""])
    assert (str(product.price), product.quantity) == ("7.5", 42)


# For each field: a clean value, then values a rule or a fast path treats specially.
_CELLS = {
    "sku": ["SKU-{row}", "SKU-{repeat}", "", " A 1", "x" * 65, "é-1", " SKU-{row} ", "ok\nsku",
            "A{row}" + "a" * 56],
    "name": ["Widget", " Widget ", "", "n" * 256, "Tab\there", "Back\\slash", "Ünïcode"],
    "description": ["D", "", "A fine, thing", "two\nlines", "carriage\rreturn", "\\N"],
    "price": ["12.50", "1", "0.5", "", "-1", "1.999", "1.500", "abc", " 7 ", "1 000",
              "\u0661\u0662", "12345678901", "NaN", "1e3"],
    "currency": ["EUR", "eur", "", " usd ", "EURO", "XXX", "ﬀ"],
    "quantity": ["3", "", "0042", "2.5", "-2", "4.0", "1" * 18, "\u0663", "1e2"],
    "barcode": ["", "4006381333931", "036000291452", "036000291453", "4006381333932", "12345",
                "\u0664006381333931", " 4006381333931 ", "40063813339310"],
    "category": ["C", "", "c" * 256],
    "brand": ["B", "", "b" * 256],
    "status": ["active", "draft", "", "DRAFT", " Active ", "gone"],
}  # fmt: skip


def _random_row(rnd, fields, row):
    """A clean row, or one with a single special value (so that each special case also
    meets otherwise clean rows, which take the column-at-a-time path), sometimes ragged."""
    values = [_CELLS[f][0] if f else "extra" for f in fields]
    if rnd.random() < 0.4:
        i = rnd.randrange(len(fields))
        if fields[i]:
            values[i] = rnd.choice(_CELLS[fields[i]][1:])
    values = [v.format(row=row, repeat=rnd.randrange(2, row + 1)) for v in values]
    shape = rnd.random()
    if shape < 0.03:
        values = values[:-1]  # ragged
    elif shape < 0.06:
        values = [*values, "", " "]  # trailing empty cells are fine
    elif shape < 0.08:
        values = [*values, "extra"]
    return values


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "header",
    [
        list(FIELDS),
        ["Item SKU", "Title", "Unit Price", "Qty", "EAN", "notes"],
        ["status", "price", "brand", "name", "sku", "currency", "category"],
    ],
)
def test_batches_give_exactly_what_row_by_row_checking_gives(seed, header):
    """``check_batch`` (columns at C speed, the import's hot path) against ``check`` row by
    row, on random rows that hit every rule, fast path and escape: the same clean values,
    the same errors with the same messages, the same repeats, and the same COPY lines."""
    import random

    from imports.pipeline.copy_text import CopyBatch, line_of

    rnd = random.Random(seed)
    mapped = map_header(header)
    fields = [None] * len(header)
    for field, index in mapped.columns.items():
        fields[index] = field
    by_row, by_batch = RowValidator(mapped, 50), RowValidator(mapped, 50)
    number = 1
    for size in [1, 7, 64, 200, 3, 500, 50, 50, 50]:
        clean_batch = rnd.random() < 0.3
        numbers, rows = [], []
        for _ in range(size):
            number += 1
            numbers.append(number)
            row = _random_row(rnd, fields, number)
            rows.append(
                [_CELLS[f][0].format(row=number) if f else "" for f in fields]
                if clean_batch
                else row
            )
        expected_clean, expected_errors = [], []
        for n, values in zip(numbers, rows, strict=True):
            out = by_row.check(n, values)
            if isinstance(out, RowError):
                expected_errors.append((out.row_number, out.message, out.values))
            else:
                expected_clean.append((n, out))
        checked = by_batch.check_batch(tuple(numbers), tuple(rows))
        clean = list(zip(checked.numbers, zip(*checked.columns, strict=True), strict=True))
        errors = [(e.row_number, e.message, e.values) for e in checked.errors]
        assert clean == expected_clean
        assert errors == expected_errors
        batch = CopyBatch.of("7", checked.numbers, checked.columns)
        assert batch.lines == [line_of("7", values) for _, values in expected_clean]
        assert batch.keys == [values[0] for _, values in expected_clean]


# The column patterns (``all_match``) use possessive quantifiers; each must accept exactly the
# columns its plain pattern of one value accepts (the modules' own, where they have one), and
# whether an empty value passes.
def _one_value() -> dict[str, tuple[str, bool]]:
    from enrichment import catalogue
    from imports.pipeline import validation

    return {
        # SKU_RE has no length; ``check`` tests SKU_MAX beside it
        "sku": (rf"[A-Za-z0-9][A-Za-z0-9._\-/]{{0,{validation.SKU_MAX - 1}}}", False),
        "product price": (validation._PLAIN_PRICE.pattern, False),
        "quantity": (r"[0-9]{0,17}", False),
        "stock": (catalogue._STOCK.pattern, True),
        "moq": (catalogue._MOQ.pattern, True),
        "component price": (catalogue._PLAIN_PRICE.pattern, True),
        "price breaks": (catalogue._BREAKS.pattern, True),
        "url": (r"https?://[^\n]*", True),
    }


def _column_patterns():
    from enrichment import catalogue
    from imports.pipeline import validation

    return {
        "sku": validation._SKU_LINES,
        "product price": validation._PRICE_LINES,
        "quantity": validation._QUANTITY_LINES,
        "stock": catalogue._STOCK_LINES,
        "moq": catalogue._MOQ_LINES,
        "component price": catalogue._PRICE_LINES,
        "price breaks": catalogue._BREAKS_LINES,
        "url": catalogue._URL_LINES,
    }


def _values(rnd, name: str) -> list[str]:
    """Values near the pattern's edges: its own characters, a few others, lengths around its
    limits."""
    alphabet = {
        "sku": "aZ09._-/ #",
        "url": "htps:/x. \t",
        "price breaks": "0123456789:;. ",
    }.get(name, "0123456789. -+")
    out = ["", "0", "00", "1", ".", "1.", ".5", "http://", "https://", "https:/", "x"]
    for _ in range(4000):
        n = rnd.choice([rnd.randint(0, 8), rnd.randint(8, 22), rnd.randint(60, 70)])
        out.append("".join(rnd.choice(alphabet) for _ in range(n)))
    # valid-looking ones, at and past each limit
    for digits in (1, 8, 9, 10, 11, 17, 18, 19):
        out.append("1" * digits)
        out.append("1" * digits + ".5")
        out.append("9" * digits + ":" + "1" * digits + ";2:0.123456")
    out.append("A" * 64)
    out.append("A" * 65)
    out.append("1:0.10;100:0.05")
    out.append("1:0.1234567")
    # each limit of a price break, in the first break and in a later one
    for quantity in ("9" * 12, "9" * 13):
        for price in ("1", "1" * 8, "1" * 9, "0.123456", "0.1234567"):
            out.append(f"{quantity}:{price}")
            out.append(f"1:1;{quantity}:{price}")
            out.append(f"1:1;2:{price};3:1")
    return out


@pytest.mark.parametrize("name", sorted(_one_value()))
def test_each_column_pattern_accepts_exactly_what_its_one_value_pattern_does(name):
    import random
    import re

    from imports.pipeline.validation import all_match

    one, empty_ok = _one_value()[name]
    plain = re.compile(one)
    column = _column_patterns()[name]
    rnd = random.Random(name)
    values = _values(rnd, name)

    def ok(value: str) -> bool:
        return (empty_ok and value == "") or plain.fullmatch(value) is not None

    for value in values:
        assert all_match(column, [value]) is ok(value), (name, value)
    # whole columns: one bad value anywhere fails it
    for _ in range(300):
        picked = rnd.sample(values, rnd.randint(1, 6))
        assert all_match(column, picked) is all(map(ok, picked)), (name, picked)
