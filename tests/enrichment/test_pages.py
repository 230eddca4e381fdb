"""The BOMs, BOM and components pages without JavaScript: right on first render, forms work."""

from __future__ import annotations

import pytest

from enrichment import services
from enrichment.models import Bom, BomLine, LearnedMatch, Project
from imports.jobs import run_job
from imports.models import ImportJob
from tests.fixtures.enrichment import bom_csv, components_csv
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db

ROWS = [
    ("U1", "1", "LM358D", "", "op amp", ""),
    ("D1", "10", "BAS16J,115", "", "", ""),
    ("J1", "1", "CONN", "", "", "DNP"),
]


def _bom(org, user, rows=ROWS, project=None):
    bom, _ = services.bom_create(
        organization=org, user=user, upload=upload(bom_csv(rows), "board.csv"), project=project
    )
    return bom


def test_boms_page_uploads_a_bom_and_filters_by_project(client, operator, org):
    client.force_login(operator)
    resp = client.post("/boms/", {"action": "project", "name": "Rover"}, follow=True)
    project = Project.objects.get(organization=org, name="Rover")
    resp = client.post(
        "/boms/",
        {"file": upload(bom_csv(ROWS), "main.csv"), "name": "Main", "project": project.id},
        follow=True,
    )
    bom = Bom.objects.get(organization=org, name="Main")
    assert resp.redirect_chain[-1][0] == f"/boms/{bom.id}/"
    assert "BOM &#x27;Main&#x27; stored: 3 lines." in resp.content.decode()
    _bom(org, operator)
    page = client.get(f"/boms/?project={project.id}").content.decode()
    assert "Main" in page and ">board<" not in page
    assert ">board<" in client.get("/boms/").content.decode()


def test_the_boms_page_counts_every_line_not_the_latest_run_s(client, operator, org, catalogue):
    """A re-run of the unresolved lines counts only those; the list shows the BOM's lines."""
    client.force_login(operator)
    bom = _bom(org, operator)
    for only in (None, "unresolved"):
        job = services.enrichment_start(bom=bom, user=operator, only=only)
        run_job(str(job.id))
    line = BomLine.objects.get(bom=bom, line_number=2)  # LM358D, no maker: ambiguous
    services.line_resolve(line=line, component_id=line.candidates[0]["component_id"], user=None)
    page = client.get("/boms/").content.decode()
    row = page[page.index(">board<") :]
    cells = [c.split("<")[0] for c in row.split('<td class="num">')[1:5]]
    # lines 3, matched: LM358D (resolved) and BAS16J,115; ambiguous none; not found none
    assert cells == ["3", "2", "0", "0"], cells


def test_bad_bom_upload_shows_the_reason(client, operator):
    client.force_login(operator)
    resp = client.post("/boms/", {"file": upload(b"qty,colour\n1,red\n", "x.csv")})
    assert resp.status_code == 400
    assert "Column &#x27;mpn&#x27; is missing (found: qty, colour)" in resp.content.decode()


def test_a_nul_past_the_file_s_first_bytes_is_an_error_line_not_a_500(client, operator, org):
    """The reader checks only the first 64 KiB for a binary file; a NUL later in a cell
    reached the database (a 500 on the page, a file left behind on the API)."""
    client.force_login(operator)
    rows = [("R1", "1", f"PART-{i:05d}", "", "a resistor of some length", "") for i in range(3000)]
    data = bom_csv([*rows, ("U9", "1", "AB\x00C", "", "", "")])
    assert len(data) > 65536 and data.index(b"\x00") > 65536
    resp = client.post("/boms/", {"file": upload(data, "nul.csv"), "name": "Nul"}, follow=True)
    assert resp.status_code == 200
    bom = Bom.objects.get(organization=org, name="Nul")
    bad = BomLine.objects.get(bom=bom, line_number=3002)
    assert (bad.mpn, bad.match_status) == ("ABC", "error")
    assert "NUL character" in bad.notes[0]
    assert bom.line_count == 3001


def test_a_project_name_with_a_nul_is_refused_with_the_reason(client, operator, org):
    client.force_login(operator)
    resp = client.post("/boms/", {"action": "project", "name": "Ro\x00ver"}, follow=True)
    assert resp.status_code == 400
    assert "NUL character" in resp.content.decode()
    assert not Project.objects.filter(organization=org).exists()


@pytest.mark.parametrize("asked", ["foreign", "9999999", "x"])
def test_a_bom_uploaded_into_a_project_that_is_not_yours_is_refused(
    client, operator, org, other_org, asked
):
    theirs = Project.objects.create(organization=other_org, name="Theirs")
    project = str(theirs.id) if asked == "foreign" else asked
    client.force_login(operator)
    resp = client.post("/boms/", {"file": upload(bom_csv(ROWS), "main.csv"), "project": project})
    assert resp.status_code == 400
    assert f"Project &#x27;{project}&#x27; is not one of your organization" in resp.content.decode()
    assert not Bom.objects.exists()


def test_bom_page_shows_segments_lines_and_resolves_in_place(client, operator, org, catalogue):
    bom = _bom(org, operator)
    job = services.enrichment_start(bom=bom, user=operator, priority=5)
    run_job(str(job.id))
    client.force_login(operator)
    page = client.get(f"/boms/{bom.id}/").content.decode()
    assert f'data-stream-url="/api/v1/enrichment/stream/{bom.id}?organization={org.id}"' in page
    assert 'data-count="matched">1<' in page  # BAS16J,115 (packaging)
    assert 'data-count="ambiguous">1<' in page  # LM358D from two makers
    assert 'data-count="skipped">1<' in page
    assert "Start enrichment" in page and "Export CSV" in page
    assert "100%" in page
    only_ambiguous = client.get(f"/boms/{bom.id}/?status=ambiguous").content.decode()
    assert "BAS16J,115" not in only_ambiguous and "LM358D" in only_ambiguous

    line = BomLine.objects.get(bom=bom, mpn="LM358D")
    ti = catalogue[("Texas Instruments", "LM358D")]
    resp = client.post(
        f"/boms/{bom.id}/resolve", {"line": line.id, "component": ti.id}, follow=True
    )
    assert "Line 2 resolved." in resp.content.decode()
    line.refresh_from_db()
    assert (line.match_status, line.match_tier, line.component_id) == ("matched", "manual", ti.id)
    assert LearnedMatch.objects.filter(organization=org, component=ti).exists()


def test_page_start_queues_a_run_and_a_viewer_cannot(client, viewer, operator, org):
    bom = _bom(org, operator)
    client.force_login(viewer)
    resp = client.post(f"/boms/{bom.id}/start", {"priority": "9"}, follow=True)
    assert "can watch BOMs but not change them" in resp.content.decode()
    assert not ImportJob.objects.filter(kind="bom_enrichment").exists()
    client.force_login(operator)
    resp = client.post(f"/boms/{bom.id}/start", {"priority": "9"}, follow=True)
    job = ImportJob.objects.get(kind="bom_enrichment")
    assert job.priority == "high" and job.status == "queued"
    page = resp.content.decode()
    assert 'data-running="1"' in page and "Start enrichment</button>" in page


def test_another_tenants_bom_page_is_404(client, outsider, org, operator):
    bom = _bom(org, operator)
    client.force_login(outsider)
    assert client.get(f"/boms/{bom.id}/").status_code == 404
    assert client.post(f"/boms/{bom.id}/start", {"priority": "5"}).status_code == 404


def test_components_page_searches_and_imports(client, operator, org, catalogue):
    client.force_login(operator)
    page = client.get("/components/?mpn=lm358").content.decode()
    assert page.count("<td>LM358D") == 2 and "BAS16J" not in page
    page = client.get("/components/?manufacturer=TI").content.decode()
    assert "Texas Instruments" in page and "STMicroelectronics" not in page
    assert "shared key" in client.get("/components/?mpn=1.5SMC").content.decode()
    rows = [("Bourns", "CAT16-103J4LF", "", "", "", "active", "", "10", "", "0.1", "", "")]
    resp = client.post(
        "/components/", {"file": upload(components_csv(rows), "more.csv")}, follow=True
    )
    job = ImportJob.objects.get(kind="component_import")
    assert resp.redirect_chain[-1][0] == f"/jobs/{job.id}/"
