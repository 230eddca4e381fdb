"""Reading stops as soon as a document is known to be too large: more lines than
``PO_MAX_LINES``, or e-mail headers longer than the header parser reads in reasonable time."""

from __future__ import annotations

from pathlib import Path

import pytest

from imports.purchasing.parsing import ParseError, parse_document, tabular
from imports.purchasing.parsing.mail import MAX_HEADER_CHARS, parse_email
from tests.purchasing.documents import po_csv


def test_a_tabular_reader_stops_at_the_line_limit(tmp_path, monkeypatch):
    path = tmp_path / "order.csv"
    path.write_bytes(po_csv(5_000))
    read: list[int] = []
    real = tabular._csv_rows

    def counted(p: Path):
        for row in real(p):
            read.append(1)
            yield row

    monkeypatch.setattr(tabular, "_csv_rows", counted)
    with pytest.raises(ParseError, match="more than 10 lines; at most 10 are read"):
        parse_document(path, "order.csv", max_lines=10)
    assert len(read) < 30  # the key-value block, the header row and 11 lines; not 5,000
    # without a limit (or under it) the same file reads whole
    assert len(parse_document(path, "order.csv").lines) == 5_000


def test_an_attached_order_keeps_the_e_mails_line_limit(tmp_path):
    mail = (
        b"Subject: PO\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: text/csv\r\n"
        b'Content-Disposition: attachment; filename="po.csv"\r\n\r\n'
        + po_csv(50).replace(b"\n", b"\r\n")
        + b"\r\n--b--\r\n"
    )
    path = tmp_path / "order.eml"
    path.write_bytes(mail)
    with pytest.raises(ParseError, match="more than 20 lines"):
        parse_document(path, "order.eml", max_lines=20)
    assert len(parse_document(path, "order.eml").lines) == 50


def test_an_e_mail_header_too_long_to_parse_is_refused_at_once():
    # 48 KB of parameters: two seconds in the standard library's parser, days at 20 MB
    raw = b"Content-Type: text/plain" + b"; a=b" * 8_000 + b"\r\n\r\nbody\r\n"
    with pytest.raises(ParseError, match="'Content-Type' header is 40,010 characters long"):
        parse_email(raw, [])
    assert MAX_HEADER_CHARS >= 998  # a header as long as a mail line may be is read


def test_an_e_mail_of_many_parts_with_long_headers_is_refused_before_its_end():
    part = b"--x\r\nContent-Type: text/plain" + b"; a=b" * 330 + b"\r\n\r\nq\r\n"
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + part * 300 + b"--x--\r\n"
    with pytest.raises(ParseError, match="more header text than an order's e-mail has"):
        parse_email(raw, [])
