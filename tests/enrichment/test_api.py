"""The enrichment API: uploads, runs, lines, resolving, export, tenancy and roles."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import openpyxl
import pytest

from enrichment.models import Bom, BomLine, Component, LearnedMatch, Project
from imports.jobs import run_job
from imports.models import ImportJob, JobStatus
from tests.fixtures.enrichment import bom_csv, components_csv
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db

BOM_ROWS = [
    ("R1,R2", "2", "RC0603FR-0710KL", "Yageo", "10k", ""),
    ("U1", "1", "LM358D", "TI", "op amp", ""),
    ("U2", "1", "LM358D", "", "op amp", ""),
    ("D1", "", "1.5SMC-68CA", "", "TVS", ""),
    ("D2", "5000", "BAS16J,115", "Nexperia", "diode", ""),
    ("U3", "1", "NOPE-123", "", "", ""),
    ("J1", "1", "CONN-XYZ", "", "", "DNP"),
    ("R9", "x", "RC0603FR-0710KL", "Yageo", "", ""),
]


def post_bom(api, rows=BOM_ROWS, name="board.csv", **fields):
    return api.post(
        "/api/v1/boms", {"file": upload(bom_csv(rows), name), **fields}, format="multipart"
    )


def enrich(api, bom_id, **body):
    """Start a run over the API and run its job in this process (no worker needed here)."""
    resp = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", body, format="json")
    assert resp.status_code == 202, resp.content
    run_job(resp.json()["id"])
    return ImportJob.objects.get(pk=resp.json()["id"])


def assert_learned(api, row, component_id):
    """A new BOM of one line, ``row``, enriched: the line is matched by the learned tier."""
    bom_id = post_bom(api, rows=[row]).json()["id"]
    enrich(api, bom_id)
    line = BomLine.objects.get(bom_id=bom_id)
    assert (line.match_status, line.match_tier, line.component_id) == (
        "matched",
        "learned",
        component_id,
    )


def test_bom_upload_maps_aliases_dnp_and_keeps_bad_rows(api, org):
    resp = post_bom(api, name="Main board.csv")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["name"] == "Main board" and body["line_count"] == 8
    assert body["row_errors"] == ["Row 9: quantity 'x' is not a whole number"]
    lines = {line.line_number: line for line in BomLine.objects.filter(bom_id=body["id"])}
    assert (lines[2].references, lines[2].quantity, lines[2].mpn) == ("R1,R2", 2, "RC0603FR-0710KL")
    assert lines[5].quantity == 1  # no quantity: one per designator
    assert lines[8].dnp and not lines[7].dnp
    assert lines[9].match_status == "error"


@pytest.mark.parametrize(
    "header",
    [
        ("RefDes", "Quantity", "Manufacturer Part Number", "Manufacturer", "Description",
         "Do Not Populate"),
        ("Reference(s)", "Qty", "MFG#", "MFG", "Value", "DNP"),
        ("Designator", "Qty", "Part Number", "Mfr", "Value", "DNP"),
        ("Designator", "Qty", "Mfr Part #", "Mfr", "Value", "DNP"),
    ],
)  # fmt: skip
def test_bom_header_aliases(api, header):
    rows = [("C1", "3", "GRM188R71H104KA93D", "Murata", "100n", "no")]
    resp = api.post(
        "/api/v1/boms",
        {"file": upload(bom_csv(rows, header=header), "b.csv")},
        format="multipart",
    )
    assert resp.status_code == 201, resp.content
    line = BomLine.objects.get(bom_id=resp.json()["id"])
    assert (line.mpn, line.manufacturer, line.quantity, line.dnp) == (
        "GRM188R71H104KA93D",
        "Murata",
        3,
        False,
    )


def test_an_internal_part_number_beside_the_maker_s_is_not_the_mpn(api):
    header = ("Designator", "Qty", "Part Number", "Manufacturer Part Number", "Manufacturer")
    rows = [("U1", "2", "INT-00042", "LM358D", "TI")]
    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(rows, header=header), "b.csv")}, format="multipart"
    )
    assert resp.status_code == 201, resp.content
    assert BomLine.objects.get(bom_id=resp.json()["id"]).mpn == "LM358D"
    twice = ("Designator", "MPN", "Mfr Part #")  # two makers' part number columns: which one?
    resp = api.post(
        "/api/v1/boms",
        {"file": upload(bom_csv([("U1", "A", "B")], header=twice), "b.csv")},
        format="multipart",
    )
    assert resp.status_code == 400
    assert "'MPN' and 'Mfr Part #' both mean 'mpn'" in resp.content.decode()


def test_fitted_column_marks_unfitted_lines(api):
    header = ("Designator", "Qty", "MPN", "Fitted")
    rows = [("C1", "1", "A1", "Fitted"), ("C2", "1", "A2", "No"), ("C3", "1", "A3", "Not Fitted")]
    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(rows, header=header), "b.csv")}, format="multipart"
    )
    dnp = dict(BomLine.objects.filter(bom_id=resp.json()["id"]).values_list("mpn", "dnp"))
    assert dnp == {"A1": False, "A2": True, "A3": True}  # Altium writes "Not Fitted"


def test_bad_bom_files_are_refused_with_the_reason(api, settings):
    resp = api.post(
        "/api/v1/boms",
        {"file": upload(bom_csv([("1",)], header=("Qty", "Colour")), "b.csv")},
        format="multipart",
    )
    assert resp.status_code == 400
    assert "Column 'mpn' is missing (found: Qty, Colour)" in resp.json()["detail"]
    resp = api.post("/api/v1/boms", {"file": upload(b"\x00\x01\x02" * 50, "b.csv")})
    assert resp.status_code == 400 and "binary" in resp.json()["detail"]
    settings.BOM_MAX_LINES = 5
    resp = post_bom(api)
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith("The BOM has 8 lines; at most 5 are accepted")
    assert Bom.objects.count() == 0


def test_bom_upload_with_another_tenants_project_is_400(api, other_org):
    foreign = Project.objects.create(organization=other_org, name="Secret")
    resp = post_bom(api, project_id=foreign.id)
    assert resp.status_code == 400 and f"project_id {foreign.id}" in resp.json()["detail"]


def test_enrichment_run_fills_lines_and_counts(api, org, catalogue):
    bom_id = post_bom(api).json()["id"]
    job = enrich(api, bom_id)
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.kind == "bom_enrichment" and job.processed_rows == 8

    detail = api.get(f"/api/v1/boms/{bom_id}").json()
    assert detail["counts"]["matched"] == 3  # RC0603, LM358D by TI, BAS16J,115
    assert detail["counts"]["ambiguous"] == 2  # LM358D with no maker, the 1.5SMC collision
    assert detail["counts"]["not_found"] == 1 and detail["counts"]["skipped"] == 1
    assert detail["counts"]["error"] == 1  # the row whose quantity is not a number
    assert detail["state"]["percent_complete"] == 100
    # 2 x 0.001 + 1 x 0.20 + 5000 x 0.01
    assert detail["total_cost"] == "50.20" and detail["currency"] == "USD"

    lines = api.get(f"/api/v1/boms/{bom_id}/lines?match_status=ambiguous").json()
    assert lines["count"] == 2
    collision = next(r for r in lines["results"] if r["mpn"] == "1.5SMC-68CA")
    assert collision["component"] is None
    assert {c["component"]["mpn"] for c in collision["candidates"]} == {"1.5SMC68CA", "1.5SMC6.8CA"}
    assert set(collision["candidates"][0]) == {"component", "score"}
    assert set(collision["candidates"][0]["component"]) == {
        "id", "manufacturer", "mpn", "lifecycle", "stock", "unit_price", "currency",
        "datasheet_url",
    }  # fmt: skip
    bas = api.get(f"/api/v1/boms/{bom_id}/lines?match_status=matched").json()["results"]
    bas = next(r for r in bas if r["mpn"] == "BAS16J,115")
    assert (bas["match_tier"], bas["unit_price"], bas["extended_price"]) == (
        "packaging",
        "0.01",
        "50",
    )
    assert bas["component"]["mpn"] == "BAS16J" and bas["confidence"] < 1


def test_lines_filter_by_lifecycle_and_refuse_unknown_values(api, catalogue):
    bom_id = post_bom(api, rows=[("U1", "1", "LT1761ES5-5", "", "", "")]).json()["id"]
    enrich(api, bom_id)
    assert api.get(f"/api/v1/boms/{bom_id}/lines?lifecycle=eol").json()["count"] == 1
    assert api.get(f"/api/v1/boms/{bom_id}/lines?lifecycle=active").json()["count"] == 0
    resp = api.get(f"/api/v1/boms/{bom_id}/lines?match_status=great")
    assert resp.status_code == 400 and "Unknown match_status 'great'" in resp.json()["detail"]
    resp = api.get(f"/api/v1/boms/{bom_id}/lines?limit=100000")
    assert resp.status_code == 200


def test_resolving_a_line_is_remembered_for_the_learned_tier(api, org, catalogue):
    bom_id = post_bom(api).json()["id"]
    enrich(api, bom_id)
    line = BomLine.objects.get(bom_id=bom_id, line_number=4)  # LM358D, no maker
    st = catalogue[("STMicroelectronics", "LM358D")]
    resp = api.patch(
        f"/api/v1/boms/{bom_id}/lines/{line.id}", {"component_id": st.id}, format="json"
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert (body["match_status"], body["match_tier"], body["component"]["id"]) == (
        "matched",
        "manual",
        st.id,
    )
    assert LearnedMatch.objects.get(organization=org, mpn_key="LM358D").component_id == st.id

    assert_learned(api, ("U7", "1", "lm358d", "", "", ""), st.id)


def test_a_line_resolved_after_the_run_was_asked_for_keeps_the_operator_s_choice(
    api, org, catalogue
):
    """The run reads its lines when it begins; a line an operator resolves after the run was
    asked for (queued here, or while it runs) is not written over with the run's outcome."""
    bom_id = post_bom(api).json()["id"]
    resp = api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert resp.status_code == 202, resp.content
    line = BomLine.objects.get(bom_id=bom_id, line_number=2)  # RC0603FR-0710KL: exact
    st = catalogue[("STMicroelectronics", "LM358D")]
    patched = api.patch(
        f"/api/v1/boms/{bom_id}/lines/{line.id}", {"component_id": st.id}, format="json"
    )
    assert patched.status_code == 200, patched.content
    run_job(resp.json()["id"])
    line.refresh_from_db()
    assert (line.match_status, line.match_tier, line.component_id) == ("matched", "manual", st.id)
    job = ImportJob.objects.get(pk=resp.json()["id"])
    assert job.status == JobStatus.COMPLETED
    # the run counted the line as the operator left it: the counts still add up
    counts = job.options["counts"]
    assert sum(counts.values()) == job.total_rows
    assert (
        counts["matched"] == BomLine.objects.filter(bom_id=bom_id, match_status="matched").count()
    )
    # a run asked for after the resolution matches the line again (its exact part)
    enrich(api, bom_id)
    line.refresh_from_db()
    assert (line.match_tier, line.component_id) == (
        "exact",
        catalogue[("Yageo", "RC0603FR-0710KL")].id,
    )


@pytest.mark.parametrize(
    "mpn, maker",
    [
        ("ß" * 150, ""),  # upper case lengthens it: "SS" * 150
        # the longest key a line gives: 598 characters, 1,195 bytes (and a letter, or the
        # line gives no part number)
        ("ῷ" * 199 + "A", "M" * 200),
    ],
)
def test_a_resolution_is_remembered_whatever_the_length_of_the_line_s_keys(
    api, org, catalogue, mpn, maker
):
    """Upper case can lengthen an MPN up to three times; the learned choice's keys hold the
    longest a line can give, and the next BOM's line with that MPN is matched by it."""
    bom_id = post_bom(api, rows=[("U1", "1", mpn, maker, "", "")]).json()["id"]
    line = BomLine.objects.get(bom_id=bom_id)
    st = catalogue[("STMicroelectronics", "LM358D")]
    resp = api.patch(
        f"/api/v1/boms/{bom_id}/lines/{line.id}", {"component_id": st.id}, format="json"
    )
    assert resp.status_code == 200, resp.content
    assert resp.json()["match_tier"] == "manual"
    learned = LearnedMatch.objects.get(organization=org)
    assert (learned.mpn_key, learned.manufacturer_key) == (mpn.upper(), maker)

    assert_learned(api, ("U9", "2", mpn, maker, "", ""), st.id)


def test_resolving_with_a_foreign_component_is_400_and_foreign_line_404(
    api, outsider_api, org, other_org, catalogue
):
    bom_id = post_bom(api).json()["id"]
    line = BomLine.objects.filter(bom_id=bom_id).first()
    foreign = Component.objects.create(organization=other_org, manufacturer="X", mpn="Y")
    resp = api.patch(
        f"/api/v1/boms/{bom_id}/lines/{line.id}", {"component_id": foreign.id}, format="json"
    )
    assert resp.status_code == 400 and f"component_id {foreign.id}" in resp.json()["detail"]
    mine = catalogue[("Yageo", "RC0603FR-0710KL")].id
    resp = outsider_api.patch(
        f"/api/v1/boms/{bom_id}/lines/{line.id}", {"component_id": mine}, format="json"
    )
    assert resp.status_code == 404


def test_rerun_of_unresolved_lines_only(api, org, catalogue):
    bom_id = post_bom(api).json()["id"]
    enrich(api, bom_id)
    lines = BomLine.objects.filter(bom_id=bom_id)
    lines.exclude(match_status="error").update(notes=["before the re-run"])
    job = enrich(api, bom_id, only="unresolved")
    assert job.total_rows == 4  # 2 ambiguous, 1 not found, 1 error
    notes = dict(BomLine.objects.filter(bom_id=bom_id).values_list("line_number", "notes"))
    rerun = [n for n, note in notes.items() if note != ["before the re-run"]]
    assert sorted(rerun) == [4, 5, 7, 9]
    bad = BomLine.objects.get(bom_id=bom_id, line_number=9)
    assert (bad.match_status, bad.notes) == ("error", ["Row 9: quantity 'x' is not a whole number"])


@pytest.fixture
def two_hats(org, other_org):
    """A client of a viewer of ``other_org`` (their oldest membership) who operates ``org``."""
    from rest_framework.test import APIClient

    from imports.models import Membership, Role
    from tests.fixtures.accounts import member

    user = member(other_org, "two-hats", Role.VIEWER)
    Membership.objects.create(user=user, organization=org, role=Role.OPERATOR)
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_body_s_organization_id_picks_which_of_the_caller_s_organizations(
    api, org, other_org, catalogue, two_hats
):
    """A member of two organizations starts a run on the second one's BOM by naming it in the
    body, as the seed's clients do (no X-Organization header); the role is theirs there."""
    client = two_hats
    url = f"/api/v1/boms/{post_bom(api).json()['id']}/enrichment/start"  # a BOM of org
    assert client.post(url, {}, format="json").status_code == 403  # as a viewer of other_org
    resp = client.post(url, {"organization_id": org.id}, format="json")
    assert resp.status_code == 202, resp.content
    assert ImportJob.objects.get(pk=resp.json()["id"]).organization_id == org.id
    # an organization that is not theirs is 404, a malformed one 400 naming the field
    outsider_org_id = other_org.id + 1000
    resp = client.post(url, {"organization_id": outsider_org_id}, format="json")
    assert resp.status_code == 404
    resp = client.post(url, {"organization_id": ["x"]}, format="json")
    assert resp.status_code == 400 and "organization_id" in resp.json()["detail"]


def test_start_validation(api, org, other_org, catalogue):
    project = Project.objects.create(organization=org, name="Board A")
    other_project = Project.objects.create(organization=org, name="Board B")
    bom_id = post_bom(api, project_id=project.id).json()["id"]
    url = f"/api/v1/boms/{bom_id}/enrichment/start"

    resp = api.post(url, {"organization_id": other_org.id}, format="json")
    assert resp.status_code == 404
    resp = api.post(url, {"project_id": other_project.id}, format="json")
    assert resp.status_code == 400
    assert (
        f"project_id {other_project.id} is not the project of BOM {bom_id}" in resp.json()["detail"]
    )
    for bad in (0, 11, -1, "high", True):
        resp = api.post(url, {"priority": bad}, format="json")
        assert resp.status_code == 400, bad
        assert "priority must be a whole number from 1 to 10" in resp.json()["detail"]

    resp = api.post(
        url,
        {"organization_id": org.id, "project_id": project.id, "priority": 9},
        format="json",
    )
    assert resp.status_code == 202
    job_id = resp.json()["id"]
    assert resp["Location"] == f"/api/v1/jobs/{job_id}"
    assert resp.json()["priority"] == "high" and resp.json()["status"] == "queued"

    resp = api.post(url, {"priority": 2}, format="json")
    assert resp.status_code == 409
    assert resp.json()["job_id"] == job_id and job_id in resp.json()["detail"]


@pytest.mark.parametrize(
    "priority, queue",
    [(10, "high"), (8, "high"), (7, "default"), (4, "default"), (3, "low"), (1, "low")],
)
def test_priority_picks_the_queue(api, priority, queue):
    bom_id = post_bom(api).json()["id"]
    resp = api.post(
        f"/api/v1/boms/{bom_id}/enrichment/start", {"priority": priority}, format="json"
    )
    assert resp.json()["priority"] == queue


def test_other_tenant_and_viewer(api, viewer_api, outsider_api, catalogue):
    bom_id = post_bom(api).json()["id"]
    for path in ("", "/lines", "/export?format=csv"):
        assert outsider_api.get(f"/api/v1/boms/{bom_id}{path}").status_code == 404
    resp = outsider_api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert resp.status_code == 404
    assert outsider_api.get("/api/v1/boms").json()["count"] == 0
    assert viewer_api.get(f"/api/v1/boms/{bom_id}").status_code == 200
    resp = viewer_api.post(f"/api/v1/boms/{bom_id}/enrichment/start", {}, format="json")
    assert resp.status_code == 403
    assert post_bom(viewer_api).status_code == 403


def test_a_viewer_is_refused_before_the_body_is_judged(api, viewer_api, outsider_api):
    """The role is checked before a start body that cannot be read is reported: a viewer is
    told 403 whatever the body, a member who may start is told what is wrong with it, and a
    caller from another tenant is told 404 (the BOM is not theirs)."""
    bom_id = post_bom(api).json()["id"]
    url = f"/api/v1/boms/{bom_id}/enrichment/start"
    broken = {"data": '{"priority": ', "content_type": "application/json"}
    foreign = {"data": "<start/>", "content_type": "application/xml"}
    assert viewer_api.post(url, **broken).status_code == 403
    assert viewer_api.post(url, **foreign).status_code == 403
    assert outsider_api.post(url, **broken).status_code == 404
    resp = api.post(url, **broken)
    assert resp.status_code == 400 and "JSON parse error" in resp.json()["detail"], resp.content
    resp = api.post(url, **foreign)
    assert resp.status_code == 415 and "application/xml" in resp.json()["detail"], resp.content
    assert not ImportJob.objects.filter(kind="bom_enrichment").exists()


def test_a_member_of_several_organizations_is_told_about_the_unreadable_body(api, two_hats):
    """Their body would have named the organization: which one (and which role) it meant
    cannot be known, so the body's problem is what they are told, whatever their roles."""
    client = two_hats
    url = f"/api/v1/boms/{post_bom(api).json()['id']}/enrichment/start"  # a BOM of org
    resp = client.post(url, data='{"organization_id": ', content_type="application/json")
    assert resp.status_code == 400 and "JSON parse error" in resp.json()["detail"]
    resp = client.post(url, data="<start/>", content_type="application/xml")
    assert resp.status_code == 415
    assert not ImportJob.objects.filter(kind="bom_enrichment").exists()


def _xlsx_export(api, bom_id):
    """The BOM's XLSX export, its worksheet."""
    resp = api.get(f"/api/v1/boms/{bom_id}/export?format=xlsx")
    assert resp.status_code == 200
    return openpyxl.load_workbook(io.BytesIO(b"".join(resp.streaming_content))).active


def test_export_is_formula_safe_csv_and_xlsx(api, catalogue):
    rows = [('=HYPERLINK("x")', "1", "LM358D", "TI", "+danger", "")]
    bom_id = post_bom(api, rows=rows).json()["id"]
    enrich(api, bom_id)
    resp = api.get(f"/api/v1/boms/{bom_id}/export?format=csv")
    assert resp.status_code == 200
    text = b"".join(resp.streaming_content).decode("utf-8-sig")
    records = list(csv.reader(io.StringIO(text)))
    header, line = records[0], dict(zip(records[0], records[1], strict=True))
    assert header[:4] == ["line", "references", "quantity", "mpn"]
    assert line["references"] == '\'=HYPERLINK("x")' and line["description"] == "'+danger"
    assert (line["match_status"], line["matched_mpn"], line["unit_price"]) == (
        "matched",
        "LM358D",
        "0.200000",
    )

    ws = _xlsx_export(api, bom_id)
    assert ws["B2"].value == '\'=HYPERLINK("x")' and ws["B2"].data_type == "s"
    # numbers stay numbers, so a buyer can sum the extended prices
    cells = dict(zip([c.value for c in ws[1]], [c.value for c in ws[2]], strict=True))
    assert (cells["line"], cells["quantity"], cells["confidence"]) == (2, 1, 1.0)
    assert cells["unit_price"] == pytest.approx(0.2) and cells["stock"] == 5000
    assert ws["P2"].data_type == "n"  # extended_price
    assert api.get(f"/api/v1/boms/{bom_id}/export?format=pdf").status_code == 400


def test_the_xlsx_export_leaves_out_control_characters_a_worksheet_cannot_hold(api, catalogue):
    rows = [("U1\x01", "1", "LM358D", "TI", "op\x07a\x1fmp", "")]
    bom_id = post_bom(api, rows=rows).json()["id"]
    enrich(api, bom_id)
    ws = _xlsx_export(api, bom_id)
    assert (ws["B2"].value, ws["F2"].value, ws["L2"].value) == ("U1", "opamp", "LM358D")
    assert BomLine.objects.get(bom_id=bom_id).description == "op\x07a\x1fmp"  # as stored


def test_a_total_too_large_to_store_is_left_empty_with_a_warning(api, org, catalogue):
    from tests.fixtures.enrichment import make_component

    big = make_component(org, "Acme", "VAULT-1", stock=10**10, price="500000")
    bom_id = post_bom(api, rows=[("V1", "2000000", "VAULT-1", "Acme", "", "")]).json()["id"]
    job = enrich(api, bom_id)
    assert job.status == JobStatus.COMPLETED, job.error_message
    line = BomLine.objects.get(bom_id=bom_id)
    assert (line.match_status, line.component_id) == ("matched", big.id)
    assert (line.unit_price, line.extended_price) == (Decimal("500000"), None)
    assert line.warnings == [
        "The extended price (2000000 x 500000.000000) is too large to store: it is left empty."
    ]
    resp = api.patch(f"/api/v1/boms/{bom_id}/lines/{line.id}", {"component_id": big.id}, "json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["extended_price"] is None and len(resp.json()["warnings"]) == 1


def test_projects_and_bom_list_by_project(api, org):
    resp = api.post("/api/v1/projects", {"name": "Rover"}, format="json")
    assert resp.status_code == 201
    pid = resp.json()["id"]
    assert api.post("/api/v1/projects", {"name": "rover"}, format="json").status_code == 409
    post_bom(api, project_id=pid)
    post_bom(api)
    assert api.get("/api/v1/boms").json()["count"] == 2
    listed = api.get(f"/api/v1/boms?project_id={pid}").json()
    assert listed["count"] == 1 and listed["results"][0]["project"]["name"] == "Rover"
    assert api.get("/api/v1/projects").json()["results"][0]["name"] == "Rover"


@pytest.mark.django_db(transaction=True)  # the import's writer thread has its own connection
def test_component_import_and_search(api, org, other_org):
    rows = [
        ("TI", "LM358D", "Dual op amp", "Amplifiers", "SOIC-8", "Active", "https://ti.com/lm358.pdf",
         "5,000", "1", "", "USD", "100:0.12;1:0.20"),
        ("Littelfuse", "1.5SMC68CA", "TVS", "", "", "active", "", "800", "", "0.40", "", ""),
        ("Littelfuse", "1.5SMC6.8CA", "TVS", "", "", "EOL", "", "900", "", "0.41", "", ""),
        ("", "NOMAKER", "", "", "", "", "", "", "", "", "", ""),
        ("X", "BAD", "", "", "", "dead", "", "-3", "", "abc", "ZZZ", "1-2"),
    ]  # fmt: skip
    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(components_csv(rows), "parts.csv")},
        format="multipart",
    )
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    assert resp.json()["kind"] == "component_import"
    assert resp["Location"] == f"/api/v1/jobs/{job_id}"
    run_job(job_id)
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "completed", job.error_message
    assert (job.created_rows, job.error_count) == (3, 2)
    messages = [e["message"] for e in job.errors]
    assert messages[0] == "Row 5: manufacturer is required"
    assert "lifecycle 'dead'" in messages[1] and "currency 'ZZZ'" in messages[1]

    lm = Component.objects.get(organization=org, mpn="LM358D")
    assert lm.manufacturer == "Texas Instruments"  # through the built-in alias
    assert (lm.stock, lm.unit_price) == (5000, Decimal("0.2"))
    assert lm.price_breaks == [[100, "0.12"], [1, "0.20"]]  # as the file gives them
    # the unit price is the smallest quantity's, and the API gives the breaks ascending
    shown = api.get("/api/v1/components?mpn=LM358D").json()["results"][0]
    assert shown["price_breaks"] == [[1, "0.20"], [100, "0.12"]]
    shared = dict(Component.objects.filter(organization=org).values_list("mpn", "mpn_norm_shared"))
    assert shared == {"LM358D": False, "1.5SMC68CA": True, "1.5SMC6.8CA": True}

    found = api.get("/api/v1/components?mpn=1.5smc").json()
    assert found["count"] == 2
    assert api.get("/api/v1/components?manufacturer=TI").json()["results"][0]["mpn"] == "LM358D"
    assert api.get("/api/v1/components?lifecycle=eol").json()["count"] == 1
    assert api.get("/api/v1/components?lifecycle=zombie").status_code == 400

    # the same file again: nothing changes, nothing is created
    again = api.post(
        "/api/v1/components/import",
        {"file": upload(components_csv(rows), "parts.csv")},
        format="multipart",
    ).json()["id"]
    run_job(again)
    job = ImportJob.objects.get(pk=again)
    assert (job.created_rows, job.updated_rows, job.unchanged_rows) == (0, 0, 3)


def test_component_file_without_mpn_column_is_refused(api):
    resp = api.post(
        "/api/v1/components/import",
        {"file": upload(b"manufacturer,colour\nTI,red\n", "parts.csv")},
        format="multipart",
    )
    assert resp.status_code == 400
    assert resp.json()["detail"] == "Column 'mpn' is missing (found: manufacturer, colour)."
