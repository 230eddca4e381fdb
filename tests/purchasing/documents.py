"""Purchase-order documents for the tests, in every format the parser reads."""

from __future__ import annotations

import io
from decimal import Decimal

from django.core.files.uploadedfile import SimpleUploadedFile


def po_csv(
    lines: int = 3,
    *,
    po_number: str = "PO-1001",
    supplier: str = "Acme Supplies",
    total_off: str = "0",
    image_url: str | None = None,
    sku_prefix: str = "ACME",
) -> bytes:
    """A CSV order: a ``Key: value`` block, the line table, then the totals."""
    rows = []
    subtotal = Decimal(0)
    for i in range(1, lines + 1):
        qty, cost = i % 7 + 1, Decimal(f"{i % 13 + 1}.25")
        total = qty * cost
        subtotal += total
        image = image_url or ""
        rows.append(f"{sku_prefix}-{i:05d},Part {i},{qty},{cost},{total},{image}")
    tax = (subtotal * Decimal("0.2")).quantize(Decimal("0.01"))
    grand = subtotal + tax + Decimal(total_off)
    head = [
        f"PO Number: {po_number}",
        f"Supplier: {supplier}",
        "Order Date: 2026-12-01",
        "Currency: EUR",
        "",
        "SKU,Description,Qty,Unit Price,Line Total,Image URL",
    ]
    tail = ["", f"Subtotal: {subtotal}", f"Tax: {tax}", f"Total: {grand}"]
    return "\n".join([*head, *rows, *tail]).encode()


def upload(content: bytes, name: str = "order.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def po_xlsx() -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["PO Number:", "X-77"])
    ws.append(["Supplier:", "Globex Parts"])
    ws.append(["Date:", "2026-11-30"])
    ws.append(["Currency: USD"])
    ws.append([])
    ws.append(["Item Code", "Name", "Quantity", "Unit Cost", "Amount"])
    ws.append(["GX-1", "Bolt", 10, 0.5, 5])
    ws.append(["GX-2", "Nut", 4, 1.25, 5])
    ws.append([])
    ws.append(["Total:", 10])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


KRAEMER_TEXT = """Kraemer Werkzeuge GmbH
Bestellung / Purchase Order
PO Number: KW-7781
Date: 03.12.2026
Currency: EUR

Pos SKU       Description            Qty   Price    Total
1   KW-100    Hammer 500g            10    27,80    278,00
2   KW-200    Zange, lang            5     12,50    62,50
      mit isoliertem Griff
3   KW-300    Schraubendreher Set    2     1.234,50 2.469,00
Subtotal: 2.809,50
Tax: 533,81
Total: 3.343,31
"""


def pdf_with_text(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (Helvetica, 10 pt)."""
    ops = ["BT", "/F1 10 Tf", "12 TL", "40 800 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    return _pdf("\n".join(ops).encode("latin-1"), font=True)


def pdf_without_text() -> bytes:
    """A 'scanned' page: only drawing, no text layer."""
    return _pdf(b"0.5 g 40 400 300 200 re f", font=False)


def _pdf(content: bytes, *, font: bool) -> bytes:
    resources = b"<< /Font << /F1 5 0 R >> >>" if font else b"<< >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources "
        + resources
        + b" /Contents 4 0 R >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def eml(body: str, *, html: bool = False, attachment: tuple[str, bytes] | None = None) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "orders@kraemer.example"
    msg["To"] = "buyer@acme.example"
    msg["Subject"] = "Bestellung KW-7781"
    msg.set_content(body, subtype="html" if html else "plain")
    if attachment:
        msg.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return bytes(msg)


def png(size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()
