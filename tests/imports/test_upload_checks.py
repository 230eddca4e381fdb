"""Uploads: XLSX decompression bombs and entity tricks, no workbook parsing on the request
thread, and the content hash that tells a repeated file."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from django.utils import timezone

from imports import services
from imports.models import ImportJob, JobStatus
from imports.pipeline import readers
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _post(client, content: bytes, name="products.csv", **fields):
    return client.post(
        "/api/v1/products/import", {"file": upload(content, name), **fields}, format="multipart"
    )


def _workbook(rows) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    for r in rows:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _rezip(content: bytes, replace: dict[str, bytes] | None = None, add=()) -> bytes:
    """``content`` (a zip) with some parts replaced and others added."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(content)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        replace = dict(replace or {})
        for item in src.infolist():
            dst.writestr(item.filename, replace.pop(item.filename, None) or src.read(item))
        for name, data in [*replace.items(), *add]:
            dst.writestr(name, data)
    return out.getvalue()


GOOD = _workbook([["sku", "name", "price"], ["A-1", "Lamp", 9.99]])


def test_a_decompression_bomb_is_refused_before_it_is_opened(api):
    # 200 MB of one byte deflates to ~200 kB: a ratio of ~1000
    bomb = _rezip(GOOD, {"xl/worksheets/sheet1.xml": b"<" + b" " * (200 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    resp = _post(api, bomb, "p.xlsx")
    assert resp.status_code == 400
    assert "decompression bomb" in resp.json()["detail"]
    assert "xl/worksheets/sheet1.xml" in resp.json()["detail"]
    assert ImportJob.objects.count() == 0


def test_too_many_parts_are_refused(api):
    many = _rezip(GOOD, add=[(f"x/{i}.xml", b"<a/>") for i in range(readers.XLSX_MAX_ENTRIES)])
    resp = _post(api, many, "p.xlsx")
    assert resp.status_code == 400
    assert "parts (at most 1,000)" in resp.json()["detail"]


def test_too_much_once_unpacked_is_refused(api, monkeypatch):
    monkeypatch.setattr(readers, "XLSX_MAX_UNCOMPRESSED_BYTES", 10 * 1024)
    resp = _post(api, _rezip(GOOD, add=[("x/big.xml", b"<a>" + b"x" * 20_000 + b"</a>")]), "p.xlsx")
    assert resp.status_code == 400
    assert "too large once unpacked" in resp.json()["detail"]


def test_the_worker_refuses_a_bomb_too(tmp_path):
    """The worker opens only what passes the same checks (a file stored before them, or a
    retry): a clear read error, never an inflated workbook."""
    path = tmp_path / "p.xlsx"
    path.write_bytes(_rezip(GOOD, {"xl/sharedStrings.xml": b"<" + b"a" * (50 * 1024 * 1024)}))
    with pytest.raises(readers.FileReadError, match="decompression bomb"):
        readers.open_source(path, "p.xlsx")


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="1"><c r="A1" t="inlineStr"><is><t>sku</t></is></c><c r="B1" t="inlineStr"><is><t>name</t>
</is></c><c r="C1" t="inlineStr"><is><t>price</t></is></c></row>
<row r="2"><c r="A2" t="inlineStr"><is><t>&lol3;</t></is></c></row></sheetData></worksheet>"""


def test_openpyxl_parses_with_defusedxml():
    import openpyxl

    assert openpyxl.DEFUSEDXML is True


def test_entity_expansion_is_refused_with_a_message(api):
    content = _rezip(GOOD, {"xl/worksheets/sheet1.xml": LAUGHS})
    resp = _post(api, content, "p.xlsx")
    # the zip is fine; its XML is refused as soon as the header is read, and no job is made
    assert resp.status_code == 400
    assert "entity declarations" in resp.json()["detail"]
    assert not ImportJob.objects.exists()


def test_an_xlsx_upload_is_not_parsed_by_openpyxl_on_the_request_thread(api, monkeypatch):
    import openpyxl

    def refuse(*args, **kwargs):
        raise AssertionError("openpyxl ran on the request thread")

    monkeypatch.setattr(openpyxl, "load_workbook", refuse)
    content = _workbook([["sku", "name", "cost"], ["A-1", "Lamp", 9.99]])
    resp = _post(api, content, "p.xlsx")
    # the header was read (without openpyxl) and its missing price named, with the proposal
    assert resp.status_code == 400
    assert "price" in resp.json()["missing"]
    assert resp.json()["proposal"]


# ------------------------------------------------------------------ content hash


def test_the_same_content_again_runs_with_a_warning_linking_the_earlier_job(api):
    content = csv_bytes(product_rows(3))
    first = _post(api, content, "monday.csv").json()
    assert first["content_sha256"] == hashlib.sha256(content).hexdigest()
    assert first["warnings"] == []
    second = _post(api, content, "tuesday.csv")
    assert second.status_code == 202
    (warning,) = second.json()["warnings"]
    assert "identical to 'monday.csv'" in warning and f"/jobs/{first['id']}/" in warning
    assert ImportJob.objects.get(pk=second.json()["id"]).status == JobStatus.QUEUED


def test_different_content_or_another_organization_or_an_old_import_is_no_duplicate(
    api, outsider_api
):
    content = csv_bytes(product_rows(3))
    first = _post(api, content).json()
    assert _post(api, csv_bytes(product_rows(4))).json()["warnings"] == []
    assert _post(outsider_api, content).json()["warnings"] == []
    ImportJob.objects.filter(pk=first["id"]).update(
        created_at=timezone.now() - timezone.timedelta(days=31)
    )
    ImportJob.objects.exclude(pk=first["id"]).delete()
    assert _post(api, content).json()["warnings"] == []


def test_a_failed_earlier_job_or_a_dry_run_is_no_duplicate(api):
    content = csv_bytes(product_rows(3))
    dry = _post(api, content, dry_run="true").json()
    assert _post(api, content).json()["warnings"] == [], "a dry run imported nothing"
    ImportJob.objects.exclude(pk=dry["id"]).update(status=JobStatus.FAILED)
    assert _post(api, content).json()["warnings"] == []


def test_the_hash_is_taken_while_storing_when_no_upload_handler_did(org, operator):
    content = csv_bytes(product_rows(2))
    job = services.import_job_create(organization=org, user=operator, upload=upload(content))
    assert job.content_sha256 == hashlib.sha256(content).hexdigest()
    job.file.open("rb")
    assert job.file.read() == content
