"""Documents and reviews an adversarial read found breaking purchase orders: each used to end
in "an internal error" (or a 500) instead of an order read, a clear reason, or a 400."""

from __future__ import annotations

import io
import zipfile
from decimal import Decimal

import pytest

from imports.models import ImportJob, Product
from imports.purchasing.models import PurchaseOrder, PurchaseOrderLine, WorkflowStage
from imports.purchasing.parsing import numbers
from imports.purchasing.parsing.document import ParsedLine, ParsedOrder
from tests.purchasing.documents import KRAEMER_TEXT, po_csv, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _post(api, content: bytes, name: str) -> tuple[int, str]:
    resp = api.post("/api/v1/purchase-orders", {"file": upload(content, name)}, format="multipart")
    assert resp.status_code == 202, resp.content
    return resp.json()["purchase_order"]["id"], resp.json()["job"]["id"]


def _ended(order_id: int, job_id: str) -> tuple[PurchaseOrder, ImportJob]:
    order, job = PurchaseOrder.objects.get(pk=order_id), ImportJob.objects.get(pk=job_id)
    assert "internal error" not in (job.error_message or ""), job.error_message
    return order, job


def test_numbers_no_order_means_are_unread_not_errors():
    for text in (True, float("nan"), Decimal("NaN"), Decimal("Infinity"), Decimal("-1e400")):
        assert numbers.parse_decimal(text) is None, text
    assert numbers.parse_decimal(Decimal("1e999999999")) is None
    assert numbers.parse_decimal(3) == 3 and numbers.parse_decimal("12,5") == Decimal("12.5")


def test_a_json_order_with_nul_surrogate_nan_true_and_huge_numbers_is_read(api, org, run_worker):
    doc = (
        b'{"po_number": "J-1", "supplier": "Acme\\u0000 Corp", "date": "2026-12-02",'
        b' "currency": "EUR", "total": NaN, "lines": ['
        b'{"sku": "A-1", "description": "x\\ud800y", "qty": true, "unit_price": 1e999999999},'
        b'{"sku": "A-2", "qty": 2, "unit_price": 5, "line_total": 10}]}'
    )
    order_id, job_id = _post(api, doc, "order.json")
    run_worker()
    order, job = _ended(order_id, job_id)
    assert order.status == "needs_review", job.error_message  # the total is unread
    parsed = ParsedOrder.from_json(
        WorkflowStage.objects.get(order_id=order_id, name="parsing").output
    )
    assert parsed.value("supplier") == "Acme Corp"
    # NaN is unread; the total is computed from the lines, as for a missing one
    assert parsed.value("total") == Decimal("10.00")
    assert parsed.fields["total"].reasons[0].startswith("computed")
    first = parsed.lines[0]
    assert first.description == "x\ufffdy"
    assert (first.quantity, first.unit_cost) == (None, None)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("deep.json", b'{"lines": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
        ("bad.xlsx", None, "could not"),
        (
            "odd.eml",
            b"From: a@example.com\r\nSubject: PO\r\nContent-Type: text/plain; charset=nope\r\n"
            b"\r\nPO Number: 1\r\n",
            "an encoding we cannot read",
        ),
        (
            "idna.eml",
            b"From: a@example.com\r\nSubject: PO\r\nContent-Type: text/plain; charset=idna\r\n"
            b"\r\nPO Number: 1 \xff\r\n",
            "an encoding we cannot read",
        ),
        (
            "name.eml",
            b"From: a@example.com\r\nSubject: PO\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
            b"Content-Type: text/csv\r\n"
            b"Content-Disposition: attachment; filename*=idna''a%ff.csv\r\n\r\nx\r\n--B--\r\n",
            "name cannot be read",
        ),
    ],
)
def test_a_broken_document_fails_with_its_reason(api, org, run_worker, name, content, reason):
    if content is None:  # a workbook holding a sheet and nothing else
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData><row><c r=")
        content = buf.getvalue()
    order_id, job_id = _post(api, content, name)
    run_worker()
    order, job = _ended(order_id, job_id)
    assert order.status == "failed" and reason in job.error_message, job.error_message


def test_costs_beyond_their_columns_are_unread_and_drafts_get_no_price(api, org, run_worker):
    row = b"ACME-00001,Part 1,2,2.25,4.50"
    csv = po_csv(2).replace(row, row[:20] + b"5000000000000,")
    order_id, job_id = _post(api, csv, "order.csv")
    run_worker()
    order, job = _ended(order_id, job_id)
    assert order.status == "needs_review"  # the line's cost is unread: to be checked
    assert any("too large" in r for r in order.review_reasons), order.review_reasons
    line = ParsedOrder.from_json(
        WorkflowStage.objects.get(order_id=order_id, name="parsing").output
    ).lines[0]
    assert line.unit_cost is None and "too large" in " ".join(line.reasons)

    # fits the order's line (numeric(16, 4)), not a product's price (numeric(12, 2))
    row, cost = b"ACME-00001,Part 1,2,2.25,4.50", b"20000000000"
    big = po_csv(1, po_number="PO-2").replace(row, row[:20] + cost + b",40000000000")
    for old, new in ((b"Subtotal: 4.50", b"40000000000"), (b"Tax: 0.90", b"0")):
        big = big.replace(old, old.split(b" ")[0] + b" " + new)
    big = big.replace(b"Total: 5.40", b"Total: 40000000000")
    assert b"2,20000000000,40000000000" in big
    order_id, job_id = _post(api, big, "big.csv")
    run_worker()
    order, job = _ended(order_id, job_id)
    assert order.status == "completed", (order.status, job.error_message)
    assert PurchaseOrderLine.objects.get(order=order).unit_cost == Decimal("20000000000")
    assert Product.objects.get(organization=org, sku="ACME-00001").price == 0


def test_a_review_with_nul_or_a_lone_surrogate_is_a_400(api, client, operator, org, run_worker):
    order_id, _ = _post(api, KRAEMER_TEXT.encode(), "kraemer.txt")
    run_worker()
    url = f"/api/v1/purchase-orders/{order_id}/review"
    for body in ('{"fields": {"supplier": "a\\u0000b"}}', '{"fields": {"supplier": "\\ud800"}}'):
        resp = api.generic("POST", url, body, content_type="application/json")
        assert resp.status_code == 400, resp.content
        assert "cannot be stored" in resp.json()["detail"]
    assert PurchaseOrder.objects.get(pk=order_id).status == "needs_review"
    # the page's form: a line number int() refuses was a 500
    client.force_login(operator)
    resp = client.post(f"/purchase-orders/{order_id}/review", {"line-" + "9" * 5000 + "-sku": "X"})
    assert resp.status_code in (302, 400)


def test_make_storable_cleans_every_text():
    order = ParsedOrder(source_format="json", template="t\x00")
    order.set("supplier", "a\x00b", 1.0, "why \ud800")
    order.lines.append(ParsedLine(line_number=1, sku="S\x00", description="\udfff"))
    order.warnings.append("w\x00")
    order.make_storable()
    assert order.value("supplier") == "ab" and order.fields["supplier"].reasons == ["why \ufffd"]
    assert (order.lines[0].sku, order.lines[0].description) == ("S", "\ufffd")
    assert order.warnings == ["w"] and order.template == "t"


def test_an_attachment_named_with_a_nul_is_read(api, org, run_worker):
    eml = (
        b"From: a@example.com\r\nSubject: PO\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        b"Content-Type: text/plain\r\n\r\nSee attached.\r\n--B\r\n"
        b"Content-Type: text/csv\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''a%00b.csv\r\n\r\n"
        + po_csv(2).replace(b"\n", b"\r\n")
        + b"\r\n--B--\r\n"
    )
    order_id, job_id = _post(api, eml, "order.eml")
    run_worker()
    order, job = _ended(order_id, job_id)
    assert order.status == "completed", job.error_message
    assert order.po_number == "PO-1001"


def test_a_reader_s_message_quoting_a_nul_still_fails_the_order(api, org, run_worker):
    content = "Description,Unit cost,No\x00te\nx,1,2\n".encode("utf-16")
    order_id, job_id = _post(api, content, "order.csv")
    run_worker()
    order, job = _ended(order_id, job_id)
    assert order.status == "failed" and "\x00" not in job.error_message
    stage = WorkflowStage.objects.get(order_id=order_id, name="parsing")
    assert stage.status == "failed" and stage.error


def test_an_order_with_more_lines_than_its_pages_can_read_fails_with_the_reason(api, org, settings):
    """The order's page read every parsed line on each view (a 20 MB file: ~200,000)."""
    from imports import jobs

    settings.PO_MAX_LINES = 4  # in this process: the job runs here
    order_id, job_id = _post(api, po_csv(lines=5), "five.csv")
    jobs.run_job(job_id)
    order, job = _ended(order_id, job_id)
    assert order.status == "failed" and job.status == "failed"
    assert "more than 4 lines; at most 4 are read (PO_MAX_LINES)" in job.error_message
    order_id, job_id = _post(api, po_csv(lines=4, po_number="PO-1002"), "four.csv")
    jobs.run_job(job_id)
    assert _ended(order_id, job_id)[0].status != "failed"
