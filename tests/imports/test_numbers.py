"""Odd numbers in numeric cells are row errors with a clear message, never internal errors."""

from __future__ import annotations

import pytest

from imports.pipeline.validation import (
    FIELDS,
    QUOTE_MAX,
    RowError,
    RowValidator,
    map_header,
    parse_price,
    parse_quantity,
)

# Each is a cell a person or a fuzzer may type into a number column.
ODD_NUMBERS = [
    "²",  # superscript two: str.isdigit() is true, int() raises
    "\u0663",  # Arabic-Indic three: int() and Decimal() read it, PostgreSQL does not
    "\uff13",  # fullwidth three
    "1\u00b2",
    "1e400",
    "1E5",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "inf",
    "--1",
    "+-1",
    "1,2,3",
    "1.2.3",
    "0x10",
    "1_000",
    "12abc",
    "\u0661\u0662.\u0665\u0660",
    "\x00",
]
HUGE = ["9" * 30, "9" * 5000, "99999999999999999999.5"]


@pytest.mark.parametrize("raw", ODD_NUMBERS)
def test_odd_price_is_a_message_not_an_exception(raw):
    message = parse_price(raw)
    assert isinstance(message, str) and message.startswith("price '")
    assert "is not a number" in message


@pytest.mark.parametrize("raw", ODD_NUMBERS)
def test_odd_quantity_is_a_message_not_an_exception(raw):
    message = parse_quantity(raw)
    assert isinstance(message, str) and message.startswith("quantity '")
    assert "is not a whole number" in message


@pytest.mark.parametrize("raw", HUGE)
def test_numbers_beyond_the_columns_range_are_too_large(raw):
    assert "is too large" in parse_price(raw)
    assert "is too large" in parse_quantity(raw) or "not a whole number" in parse_quantity(raw)


def test_quantity_just_past_bigint_range_is_too_large():
    assert "is too large" in parse_quantity(str(2**63))
    assert parse_quantity(str(2**62)) == 2**62


def test_unicode_digits_get_a_hint():
    assert parse_price("²").endswith("(write numbers with the digits 0-9 only)")
    assert parse_quantity("\uff13").endswith("(write numbers with the digits 0-9 only)")


def test_negative_numbers_say_so():
    assert parse_price("-3") == "price '-3' must be 0 or more"
    assert parse_quantity("-3") == "quantity '-3' must be 0 or more"


@pytest.mark.parametrize(
    ("raw", "price"),
    [("12.5", "12.50"), ("+3", "3.00"), (".5", "0.50"), ("1 000", "1000.00"), ("19.990", "19.99")],
)
def test_plain_prices_still_parse(raw, price):
    assert str(parse_price(raw)) == price


@pytest.mark.parametrize(("raw", "qty"), [("7", 7), ("+7", 7), ("7.0", 7), ("007", 7), ("", 0)])
def test_plain_quantities_still_parse(raw, qty):
    assert parse_quantity(raw) == qty


def _row(**cells):
    base = dict.fromkeys(FIELDS, "")
    base.update(sku="A-1", name="Lamp", price="1.00")
    base.update(cells)
    return [base[f] for f in FIELDS]


@pytest.mark.parametrize("field", ["price", "quantity", "barcode"])
@pytest.mark.parametrize("raw", [*ODD_NUMBERS, *HUGE])
def test_every_numeric_field_turns_odd_numbers_into_row_errors(field, raw):
    """Through both validator paths: the row-at-a-time one and the column-at-a-time batch."""
    header = map_header(list(FIELDS))
    rows = [_row(sku="A-0"), _row(sku="A-1", **{field: raw}), _row(sku="A-2")]
    one = RowValidator(header, 10).check(3, rows[1])
    assert isinstance(one, RowError)
    assert one.message.startswith(f"Row 3: {field} ")
    batch = RowValidator(header, 10).check_batch([2, 3, 4], rows)
    assert batch.numbers == [2, 4]
    assert [e.message for e in batch.errors] == [one.message]


def test_a_row_error_quotes_at_most_200_characters_of_a_cell():
    header = map_header(list(FIELDS))
    cell = "x" * 10_000_000
    error = RowValidator(header, 10).check(2, _row(price=cell, quantity=cell, currency=cell))
    assert isinstance(error, RowError)
    assert len(error.message) < 1000
    assert f"'{'x' * QUOTE_MAX}…' (10,000,000 characters)" in error.message
    # what is kept of the row for the error CSV is bounded too
    assert max(map(len, error.values)) <= 1000


@pytest.mark.django_db(transaction=True)
def test_a_superscript_quantity_is_one_row_error_and_the_rest_imports(api, run_worker):
    """The issue's report: one cell of '²' in a quantity failed the whole import."""
    from imports.models import ImportJob, Product
    from tests.fixtures.files import upload

    content = "sku,name,price,quantity\nA-1,Lamp,9.99,2\nA-2,Desk,1e400,²\nA-3,Chair,NaN,3\n"
    content += "A-4,Stool,5,\uff14\nA-5,Shelf,7.50,99999999999999999999999\nA-6,Rug,1,1\n"
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(content.encode(), "odd.csv")},
        format="multipart",
    )
    assert resp.status_code == 202
    run_worker()
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == "completed", job.error_message
    assert sorted(Product.objects.values_list("sku", flat=True)) == ["A-1", "A-6"]
    messages = [e["message"] for e in job.errors]
    assert messages == [
        "Row 3: price '1e400' is not a number; quantity '²' is not a whole number "
        "(write numbers with the digits 0-9 only)",
        "Row 4: price 'NaN' is not a number",
        "Row 5: quantity '\uff14' is not a whole number (write numbers with the digits 0-9 only)",
        f"Row 6: quantity '99999999999999999999999' is too large (at most {2**62})",
    ]
