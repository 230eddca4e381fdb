"""Outbound calls reach only public hosts, checked under the name httpx connects to; and the
document patterns take time in proportion to their input, whatever it holds."""

from __future__ import annotations

import socket

import pytest

from imports.purchasing import outbound
from imports.purchasing.outbound import OutboundRefused, check_url
from imports.purchasing.parsing.mail import html_to_text
from imports.purchasing.parsing.tabular import _KEY_VALUE
from imports.purchasing.parsing.text import parse_text


def test_a_unicode_host_is_checked_under_the_name_httpx_calls(monkeypatch, settings):
    """socket encodes 'straße' by IDNA 2003 (strasse), httpx by IDNA 2008 (xn--strae-oqa):
    the check resolved one name and the fetch called the other, an internal address."""
    settings.SYNC_ALLOWED_HOSTS = []
    dns = {"strasse.example": "93.184.216.34", "xn--strae-oqa.example": "127.0.0.1"}

    def resolve(host, port, **kwargs):
        name = host.encode("idna").decode("ascii")  # as socket itself would send it
        if name not in dns:
            raise socket.gaierror("unknown host")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (dns[name], port))]

    monkeypatch.setattr(outbound.socket, "getaddrinfo", resolve)
    with pytest.raises(OutboundRefused) as refused:
        check_url("http://straße.example/part.png", what="image URL")
    assert "xn--strae-oqa.example" in str(refused.value)
    assert "127.0.0.1" not in str(refused.value)  # the internal address is not told
    assert check_url("http://strasse.example/part.png") == "strasse.example"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("100.64.0.1", False),  # shared address space (carrier NAT)
        ("100.100.100.200", False),  # a cloud's metadata service there
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
        ("fec0::1", False),  # site-local
        ("::ffff:10.0.0.1", False),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_addresses_that_never_reach_the_internet_are_not_public(address, public):
    assert outbound._public(address) is public


@pytest.mark.timeout(60)
def test_document_patterns_take_linear_time_on_long_runs():
    """Each pattern tried a long run of spaces (or '<') again from each character: seconds at
    20,000 characters, days at the 20 MB upload limit, with the job's row locked."""
    n = 300_000
    text = (
        f"PO Number: PO-77\nSupplier: Acme{' ' * n}Corp  \r\nDate: 2026-12-01\r\n"
        f"AB-1 Widget{' ' * n}x 2 3.00 6.00\nAB-2 Gadget  1 2.50 2.50\nTotal: 8.50\n"
    )
    order = parse_text(text, [])
    assert order.value("supplier") == f"Acme{' ' * n}Corp"
    assert [line.sku for line in order.lines] == ["AB-1", "AB-2"]
    assert order.lines[0].description == f"Widget{' ' * n}x"
    match = _KEY_VALUE.match(f"Supplier:{' ' * n}Acme{' ' * n}x")
    assert match.group(1) == "Supplier"
    assert _KEY_VALUE.match(" PO number :  PO-9  ").groups() == ("PO number", "  PO-9  ")
    assert html_to_text("<" * n + "b>x</b>") == "<" * (n - 1) + "x"
