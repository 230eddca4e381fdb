"""What a BOM's and a catalogue's number and DNP cells mean when a file is not from an English
spreadsheet: decimal commas, absurd lengths, a Populate column in words; and a lone refused
row in its batch."""

from __future__ import annotations

import pytest

from enrichment import matching, services
from enrichment.bom_file import _quantity
from enrichment.models import BomLine, Component
from imports import jobs
from imports.models import JobStatus
from tests.fixtures.enrichment import bom_csv, components_csv
from tests.fixtures.files import upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("raw", "quantity", "problem"),
    [
        ("1,000", 1000, ""),
        ("12,500", 12500, ""),
        ("1,00,000", 100000, ""),  # grouped as in India
        ("12,34,567", 1234567, ""),
        ("00000000005", 5, ""),  # leading zeros are no digits too many
        ("1,00", 1, ""),  # a decimal comma, not a hundred
        ("2,0", 2, ""),
        ("0,5", 1, "quantity '0,5' is not a whole number"),  # not five
        ("2,5", 1, "quantity '2,5' is not a whole number"),
        ("1,2,3", 1, "quantity '1,2,3' is not a whole number"),
        ("9" * 5000, 1, f"quantity '{'9' * 5000}' is out of range"),
        ("2147483648", 1, "quantity '2147483648' is out of range"),
    ],
)
def test_quantity_cells(raw, quantity, problem):
    assert _quantity(raw, "") == (quantity, problem)


def test_a_bom_from_a_european_spreadsheet_keeps_its_quantities(api, org):
    rows = [
        ("R1", "1,00", "RC0603FR-0710KL", "Yageo", "", ""),
        ("R2", "0,5", "RC0603FR-0710KL", "Yageo", "", ""),
        ("R3", "9" * 5000, "RC0603FR-0710KL", "Yageo", "", ""),  # int() refuses: was a 500
    ]
    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(rows), "board.csv")}, format="multipart"
    )
    assert resp.status_code == 201, resp.content
    lines = BomLine.objects.filter(bom_id=resp.json()["id"]).order_by("line_number")
    assert [(line.quantity, line.match_status) for line in lines] == [
        (1, "pending"),
        (1, "error"),
        (1, "error"),
    ]
    assert len(resp.json()["row_errors"]) == 2


@pytest.mark.parametrize("value", ["Do Not Populate", "not populated", "Unpopulated", "no"])
def test_a_populate_column_in_words_marks_the_line_not_populated(api, org, value):
    header = ("Designator", "Qty", "MPN", "Manufacturer", "Value", "Populate")
    rows = [("C5", "1", "GRM188", "Murata", "", value), ("C6", "1", "GRM188", "Murata", "", "yes")]
    resp = api.post(
        "/api/v1/boms", {"file": upload(bom_csv(rows, header), "b.csv")}, format="multipart"
    )
    assert resp.status_code == 201, resp.content
    dnp = BomLine.objects.filter(bom_id=resp.json()["id"]).order_by("line_number")
    assert [line.dnp for line in dnp] == [True, False]
    assert matching.not_populated(value, fitted_column=True)


def _part(mpn, stock, moq="1"):
    return ["Nexperia", mpn, "", "", "", "active", "", stock, moq, "0.02", "USD", ""]


def test_catalogue_counts_read_their_commas_as_the_file_meant(org):
    rows = [
        _part("A1", "1,000"),
        _part("A2", "1,00", moq="2,0"),
        _part("A3", "1,5"),  # was stored as 15
        _part("A4", "0,015"),
    ]
    job = services.component_import_create(
        organization=org, user=None, upload=upload(components_csv(rows), "parts.csv")
    )
    jobs.run_job(str(job.id))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    stored = dict(Component.objects.filter(organization=org).values_list("mpn", "stock"))
    assert stored == {"A1": 1000, "A2": 1}
    assert Component.objects.get(mpn="A2").moq == 2
    assert [e["row"] for e in job.errors] == [4, 5]
    assert all("whole number" in e["message"] for e in job.errors)


def test_a_refused_row_alone_in_its_batch_is_a_row_error_not_a_failed_job(org):
    """The last batch of 11 rows in batches of 10 holds one row: the database refused it
    and the whole job failed (and failed again on retry)."""
    from django.db import connection

    rows = [_part(f"B{i:03d}", "5") for i in range(1, 12)]
    with connection.cursor() as cur:
        cur.execute(
            "ALTER TABLE enrichment_component ADD CONSTRAINT test_no_eleven "
            "CHECK (mpn <> 'B011') NOT VALID"
        )
    try:
        job = services.component_import_create(
            organization=org, user=None, upload=upload(components_csv(rows), "parts.csv")
        )
        job.options = {**job.options, "batch_size": 10}
        job.save(update_fields=["options"])
        jobs.run_job(str(job.id))
    finally:
        with connection.cursor() as cur:
            cur.execute("ALTER TABLE enrichment_component DROP CONSTRAINT test_no_eleven")
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.created_rows == 10
    assert [e["row"] for e in job.errors] == [12]
    assert "the database refused this row" in job.errors[0]["message"]


@pytest.mark.parametrize(
    ("references", "quantity"),
    [
        ("R1, R2 R3", 3),
        ("R1-R4,C7", 5),  # a range counts each: it was one
        ("J1-2", 2),
        ("R5-4", 1),  # backwards: not a range
        ("R1-R999999", 1),  # not a range either: a typo counts as one designator
        ("", 1),
    ],
)
def test_no_quantity_is_one_per_designator_ranges_included(references, quantity):
    assert _quantity("", references) == (quantity, "")
