"""The parser on its own: every format, templates, decimal commas, confidence and its reasons."""

from __future__ import annotations

import doctest
from decimal import Decimal
from pathlib import Path

import pytest

from imports.purchasing.parsing import ParseError, Template, aliases, numbers, parse_document
from imports.purchasing.parsing.confidence import review_reasons
from imports.purchasing.parsing.document import ParsedOrder
from tests.purchasing.documents import (
    KRAEMER_TEXT,
    eml,
    pdf_with_text,
    pdf_without_text,
    po_csv,
    po_xlsx,
)

KRAEMER = Template(
    name="Kraemer",
    keywords=["Kraemer Werkzeuge"],
    fields={"po_number": r"PO Number:\s*(\S+)"},
    decimal_separator=",",
    date_formats=["%d.%m.%Y"],
    supplier="Kraemer Werkzeuge GmbH",
)


def parse(tmp_path: Path, name: str, content: bytes, templates=None) -> ParsedOrder:
    path = tmp_path / name
    path.write_bytes(content)
    return parse_document(path, name, templates)


def test_doctests_of_numbers_and_aliases():
    for module in (numbers, aliases):
        assert doctest.testmod(module).failed == 0


def test_csv_header_block_and_line_table(tmp_path):
    order = parse(tmp_path, "o.csv", po_csv(3))
    assert order.value("po_number") == "PO-1001"
    assert order.value("supplier") == "Acme Supplies"
    assert order.value("currency") == "EUR"
    assert [ln.sku for ln in order.lines] == ["ACME-00001", "ACME-00002", "ACME-00003"]
    assert order.lines[0].unit_cost == Decimal("2.25") and order.lines[0].quantity == 2
    assert order.confidence == 1.0 and order.arithmetic_ok
    assert order.fields["total"].reasons == [
        "labelled in the file's header block",
        "check: subtotal + tax = total",
    ]
    assert review_reasons(order, 0.8) == []


def test_a_total_that_does_not_add_up_needs_review_whatever_the_scores(tmp_path):
    order = parse(tmp_path, "o.csv", po_csv(3, total_off="1.00"))
    assert order.fields["po_number"].score == 1.0
    reasons = review_reasons(order, 0.8)
    assert any("the total says" in r for r in reasons), reasons
    assert order.fields["total"].score == 0.5


def test_xlsx_with_key_and_value_in_two_cells(tmp_path):
    order = parse(tmp_path, "o.xlsx", po_xlsx())
    assert (order.value("po_number"), order.value("supplier"), order.value("currency")) == (
        "X-77",
        "Globex Parts",
        "USD",
    )
    assert [(ln.sku, ln.quantity, ln.unit_cost) for ln in order.lines] == [
        ("GX-1", Decimal("10"), Decimal("0.5")),
        ("GX-2", Decimal("4"), Decimal("1.25")),
    ]
    assert order.value("total") == Decimal("10")


def test_a_table_without_sku_or_quantity_is_refused_by_name(tmp_path):
    with pytest.raises(ParseError, match="needs a SKU and a quantity column"):
        parse(tmp_path, "o.csv", b"PO Number: 1\n\nName,Unit Price,Line Total\nx,1,1\n")


def test_text_with_the_suppliers_template_reads_decimal_commas_and_wrapped_lines(tmp_path):
    order = parse(tmp_path, "o.txt", KRAEMER_TEXT.encode(), [KRAEMER])
    assert order.template == "Kraemer"
    assert [(ln.sku, ln.unit_cost, ln.line_total) for ln in order.lines] == [
        ("KW-100", Decimal("27.80"), Decimal("278.00")),
        ("KW-200", Decimal("12.50"), Decimal("62.50")),
        ("KW-300", Decimal("1234.50"), Decimal("2469.00")),
    ]
    assert order.lines[1].description == "Zange, lang mit isoliertem Griff"
    assert order.value("total") == Decimal("3343.31")
    assert order.value("supplier") == "Kraemer Werkzeuge GmbH"
    assert order.fields["po_number"].reasons[:2] == [
        "template 'Kraemer' matched",
        "found exactly once",
    ]
    assert order.arithmetic_ok
    assert review_reasons(order, 0.8) == []


def test_text_without_a_matching_template_uses_the_generic_one_and_waits_for_review(tmp_path):
    order = parse(tmp_path, "o.txt", KRAEMER_TEXT.encode())
    assert order.template == "generic"
    assert order.value("po_number") == "KW-7781"
    assert order.lines[0].unit_cost == Decimal("27.80")  # the generic guess gets 27,80 too
    reasons = review_reasons(order, 0.8)
    assert reasons and "generic template" in reasons[0]


def test_a_field_found_twice_with_different_values_scores_low(tmp_path):
    text = KRAEMER_TEXT.replace("Date: 03.12.2026", "Date: 03.12.2026\nPO Number: KW-9999")
    order = parse(tmp_path, "o.txt", text.encode(), [KRAEMER])
    f = order.fields["po_number"]
    assert f.score == 0.5 and "found 2 different values" in f.reasons[-1]


def test_email_body_and_html_body(tmp_path):
    order = parse(tmp_path, "o.eml", eml(KRAEMER_TEXT), [KRAEMER])
    assert order.source_format == "email" and len(order.lines) == 3
    html = "<html><body><p>" + KRAEMER_TEXT.replace("\n", "<br>") + "</p></body></html>"
    order = parse(tmp_path, "h.eml", eml(html, html=True), [KRAEMER])
    assert order.value("po_number") == "KW-7781" and len(order.lines) == 3


def test_email_with_an_order_attached_reads_the_attachment(tmp_path):
    order = parse(
        tmp_path, "o.eml", eml("Please find our order attached.", attachment=("po.csv", po_csv(2)))
    )
    assert order.source_format == "email+csv"
    assert order.value("po_number") == "PO-1001" and len(order.lines) == 2


def test_pdf_text_layer_through_the_template(tmp_path):
    order = parse(tmp_path, "o.pdf", pdf_with_text(KRAEMER_TEXT.splitlines()), [KRAEMER])
    assert order.source_format == "pdf"
    assert order.value("po_number") == "KW-7781"
    assert [ln.sku for ln in order.lines] == ["KW-100", "KW-200", "KW-300"]
    assert order.value("total") == Decimal("3343.31")


def test_a_pdf_without_text_says_ocr_is_not_available(tmp_path):
    with pytest.raises(ParseError, match=r"no text layer.*OCR.*not available"):
        parse(tmp_path, "scan.pdf", pdf_without_text())
    with pytest.raises(ParseError, match="could not be opened"):
        parse(tmp_path, "broken.pdf", b"%PDF-1.4 not really")


def test_json_order_keeps_exact_decimals(tmp_path):
    doc = (
        b'{"po_number": "J-1", "vendor": "Initech", "date": "2026-12-02", "currency": "usd",'
        b' "total": 30.30, "lines": [{"sku": "I-1", "qty": 3, "unit_price": 10.10,'
        b' "line_total": 30.30}, {"sku": "I-2", "qty": "x", "unit_price": 1}]}'
    )
    order = parse(tmp_path, "o.json", doc)
    assert order.value("supplier") == "Initech" and order.value("currency") == "USD"
    assert order.lines[0].unit_cost == Decimal("10.10")
    assert order.lines[1].confidence <= 0.4 and "'x' is not a number" in order.lines[1].reasons[1]
    with pytest.raises(ParseError, match="not valid JSON"):
        parse(tmp_path, "bad.json", b"{")


def test_the_parse_result_round_trips_through_json(tmp_path):
    order = parse(tmp_path, "o.txt", KRAEMER_TEXT.encode(), [KRAEMER])
    again = ParsedOrder.from_json(order.to_json())
    assert again.to_json() == order.to_json()
    assert again.value("order_date").isoformat() == "2026-12-03"


def test_unknown_formats_and_empty_files(tmp_path):
    with pytest.raises(ParseError, match="not a purchase-order format"):
        parse(tmp_path, "o.doc", b"x")
    with pytest.raises(ParseError, match="empty"):
        parse(tmp_path, "o.txt", b"  \n")
