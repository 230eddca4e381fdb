"""API upload → job row → real rqworker → products in PostgreSQL → events in the log."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing

import pytest
from django.db import connection

from imports.models import ImportJob, Product
from realtime.events import job_topic, org_topic
from realtime.log import read_after
from tests.fixtures.files import csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _post(api, content: bytes, name="products.csv", **fields):
    return api.post(
        "/api/v1/products/import", {"file": upload(content, name), **fields}, format="multipart"
    )


def test_upload_is_imported_by_a_real_worker_and_announced_in_the_log(
    api, org, run_worker, settings
):
    settings.IMPORT_BATCH_SIZE = 100
    settings.PROGRESS_MIN_INTERVAL = 0
    resp = _post(api, csv_bytes(product_rows(250)))
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    assert resp["Location"] == f"/api/v1/products/import/{job_id}"
    assert resp.json()["status"] == "queued"

    run_worker()

    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "completed", job.error_message
    assert (job.total_rows, job.processed_rows, job.created_rows, job.error_count) == (
        250,
        250,
        250,
        0,
    )
    assert job.progress == 100
    assert Product.objects.filter(organization=org).count() == 250
    p = Product.objects.get(organization=org, sku="SKU-000007")
    assert (p.name, str(p.price), p.currency, p.quantity) == ("Product 7", "9.99", "EUR", 7)

    events = read_after(job_topic(job_id), None).events
    types = [e["type"] for e in events]
    assert types[0] == "job.queued"
    assert types[1] == "job.started"
    assert "job.stage" in types
    # one per batch of 100 (throttle off) but the last: job.completed follows with its counts
    assert types.count("job.progress") == 2
    assert types[-1] == "job.completed"
    last = json.loads(json.dumps(events[-1]))  # plain JSON round trip
    assert last["job"]["status"] == "completed" and last["job"]["processed_rows"] == 250
    assert last["topic"] == f"job:{job_id}" and last["id"] == events[-1]["id"]
    # the organization feed got the same events
    org_types = [e["type"] for e in read_after(org_topic(org.id), None).events]
    assert org_types == types

    detail = api.get(f"/api/v1/products/import/{job_id}").json()
    assert detail["status"] == "completed" and detail["created_rows"] == 250


def test_reimport_counts_updated_and_unchanged(api, org, run_worker):
    _post(api, csv_bytes(product_rows(40)))
    run_worker()
    rows = list(product_rows(40))
    for r in rows[:10]:
        r[3] = "19.99"
    job_id = _post(api, csv_bytes(rows)).json()["id"]
    run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert (job.created_rows, job.updated_rows, job.unchanged_rows) == (0, 10, 30)
    assert str(Product.objects.get(organization=org, sku="SKU-000001").price) == "19.99"


def test_bad_rows_are_reported_and_good_rows_imported(api, org, run_worker):
    rows = list(product_rows(5))
    rows[1][3] = "-3"  # row 3
    rows[3][0] = ""  # row 5
    rows.append(list(rows[0]))  # row 7 repeats row 2
    job_id = _post(api, csv_bytes(rows)).json()["id"]
    run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "completed"
    assert job.created_rows == 3 and job.error_count == 3
    messages = [e["message"] for e in job.errors]
    assert messages == [
        "Row 3: price '-3' must be 0 or more",
        "Row 5: sku is required",
        "Row 7: SKU 'SKU-000001' repeats row 2",
    ]
    resp = api.get(f"/api/v1/products/import/{job_id}/errors.csv")
    assert resp.status_code == 200
    body = b"".join(resp.streaming_content).decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(body)))
    assert table[0][:3] == ["row", "error", "sku"]
    assert [r[0] for r in table[1:]] == ["3", "5", "7"]
    assert table[1][5] == "'-3"  # formula-looking cell defused


def test_create_mode_refuses_existing_skus_and_update_mode_missing_ones(api, org, run_worker):
    _post(api, csv_bytes(product_rows(3)))
    run_worker()
    job_id = _post(api, csv_bytes(product_rows(4)), mode="create").json()["id"]
    run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.created_rows == 1 and job.error_count == 3
    assert job.errors[0]["message"] == "Row 2: SKU 'SKU-000001' already exists"

    job_id = _post(api, csv_bytes(product_rows(2, start=4)), mode="update").json()["id"]
    run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.error_count == 1 and job.unchanged_rows == 1
    assert job.errors[0]["message"].startswith("Row 3: SKU 'SKU-000005' does not exist")


def test_dry_run_writes_nothing_and_confirm_imports_the_same_file(api, org, run_worker):
    resp = _post(api, csv_bytes(product_rows(30)), dry_run="true")
    dry_id = resp.json()["id"]
    run_worker()
    dry = ImportJob.objects.get(pk=dry_id)
    assert dry.status == "completed" and dry.created_rows == 30
    assert Product.objects.filter(organization=org).count() == 0

    resp = api.post(f"/api/v1/products/import/{dry_id}/confirm")
    assert resp.status_code == 202, resp.content
    real_id = resp.json()["id"]
    assert real_id != dry_id and resp.json()["source_job"] == dry_id
    run_worker()
    assert ImportJob.objects.get(pk=real_id).created_rows == 30
    assert Product.objects.filter(organization=org).count() == 30
    again = api.post(f"/api/v1/products/import/{dry_id}/confirm")
    assert again.status_code == 409 and "already confirmed" in again.json()["detail"]


def test_atomic_job_with_a_bad_row_imports_nothing(api, org, run_worker, settings):
    settings.IMPORT_BATCH_SIZE = 10
    rows = list(product_rows(35))
    rows[30][5] = "many"  # row 32, in the last batch
    job_id = _post(api, csv_bytes(rows), atomic="true").json()["id"]
    run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "failed"
    assert "nothing was imported" in job.error_message
    assert job.errors[0]["message"] == "Row 32: quantity 'many' is not a whole number"
    assert Product.objects.filter(organization=org).count() == 0


@contextlib.contextmanager
def database_refuses_name(name: str):
    """Validation mirrors every column rule, so stand in for a rule only the database knows."""
    with connection.cursor() as cur:
        cur.execute(
            f"ALTER TABLE imports_product ADD CONSTRAINT test_refuse CHECK (name <> '{name}')"
        )
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("ALTER TABLE imports_product DROP CONSTRAINT test_refuse")


def test_failed_batch_keeps_what_was_stored_and_names_each_bad_row(api, org, run_worker, settings):
    settings.IMPORT_BATCH_SIZE = 10
    _post(api, csv_bytes(product_rows(5)))
    run_worker()
    before = {p.sku: p.price for p in Product.objects.filter(organization=org)}
    rows = list(product_rows(8))
    for r in rows:
        r[3] = "5.00"
    rows[2][1] = "Refused by DB"
    job_id = _post(api, csv_bytes(rows)).json()["id"]
    with database_refuses_name("Refused by DB"):
        run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "completed", job.error_message
    assert job.error_count == 1
    assert job.errors[0]["message"].startswith("Row 4: the database refused this row")
    assert "test_refuse" in job.errors[0]["message"]
    assert (job.created_rows, job.updated_rows) == (3, 4)
    # the refused row kept what was stored before; every other row of its batch went in
    assert Product.objects.get(organization=org, sku="SKU-000003").price == before["SKU-000003"]
    assert Product.objects.filter(organization=org, price="5.00").count() == 7


def test_a_refused_new_row_is_named_and_its_batch_neighbours_still_go_in(
    api, org, run_worker, settings
):
    settings.IMPORT_BATCH_SIZE = 10
    rows = list(product_rows(6))
    rows[4][1] = "Refused by DB"  # row 6, a new product: the COPY path
    job_id = _post(api, csv_bytes(rows)).json()["id"]
    with database_refuses_name("Refused by DB"):
        run_worker()
    job = ImportJob.objects.get(pk=job_id)
    assert job.status == "completed", job.error_message
    assert [e["message"][:40] for e in job.errors] == ["Row 6: the database refused this row (ne"]
    assert job.created_rows == 5
    assert sorted(Product.objects.filter(organization=org).values_list("sku", flat=True)) == [
        "SKU-000001",
        "SKU-000002",
        "SKU-000003",
        "SKU-000004",
        "SKU-000006",
    ]


def test_deleting_an_organization_deletes_its_imported_products(api, org, other_org, run_worker):
    # products carry no database-level FK (a per-row check at commit); Django's CASCADE holds
    assert _post(api, csv_bytes(product_rows(30))).status_code == 202
    run_worker()
    Product.objects.create(organization=other_org, sku="KEEP-1", name="kept", price=1)
    assert Product.objects.filter(organization=org).count() == 30
    org.delete()
    assert list(Product.objects.values_list("sku", flat=True)) == ["KEEP-1"]


def test_validator_process_sends_batches_in_order_and_reports_a_broken_file(tmp_path):
    from imports.pipeline.readers import FileReadError
    from imports.pipeline.validator_process import ValidatorProcess

    rows = list(product_rows(25))
    rows[9][3] = "-1"  # file row 11
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes(rows))
    child = ValidatorProcess(
        path=good, filename="good.csv", total=25, batch_size=10, organization_id=1
    )
    child.start()
    try:
        chunks = list(child.chunks())
    finally:
        child.stop()
    assert [(c.rows, c.last_row) for c in chunks] == [(10, 11), (10, 21), (5, 26)]
    assert [e.row_number for c in chunks for e in c.errors] == [11]
    last = chunks[2].batch
    assert (last.row_numbers[-1], last.keys[-1]) == (26, "SKU-000025")

    # a file that turns out unreadable part-way: the child's reason reaches the parent
    broken = tmp_path / "broken.csv"
    broken.write_bytes(csv_bytes(product_rows(3)) + b'X-1,"never closed,1.00\n')
    child = ValidatorProcess(
        path=broken, filename="broken.csv", total=4, batch_size=2, organization_id=1
    )
    child.start()
    try:
        with pytest.raises(FileReadError, match="never closed"):
            list(child.chunks())
    finally:
        child.stop()
    assert multiprocessing.active_children() == []  # nothing left behind
    assert multiprocessing.active_children() == []


def test_text_with_tabs_newlines_and_backslashes_is_stored_exactly(api, org, run_worker):
    rows = list(product_rows(3))
    rows[0][1] = "Tab\there"
    rows[0][2] = "line one\nline two\r\nC:\\dir\\N \\N"
    rows[1][2] = "\\N"  # COPY's NULL marker, as text
    assert _post(api, csv_bytes(rows)).status_code == 202
    run_worker()
    first = Product.objects.get(organization=org, sku="SKU-000001")
    assert first.name == "Tab\there"
    assert first.description == "line one\nline two\r\nC:\\dir\\N \\N"
    assert Product.objects.get(organization=org, sku="SKU-000002").description == "\\N"
    # and the update path (the stage table) reads the same lines
    rows[0][2] = "changed\tagain"
    assert _post(api, csv_bytes(rows)).status_code == 202
    run_worker()
    assert Product.objects.get(organization=org, sku="SKU-000001").description == "changed\tagain"


def test_first_import_skips_the_probe_until_another_writer_adds_one_of_its_skus(org, tmp_path):
    from decimal import Decimal

    from imports.pipeline.validator_process import ValidatorProcess
    from imports.pipeline.writers import ProductWriter

    path = tmp_path / "first.csv"
    path.write_bytes(csv_bytes(product_rows(8)))
    child = ValidatorProcess(
        path=path, filename="first.csv", total=8, batch_size=4, organization_id=org.id
    )
    child.start()
    try:
        first, second = (c.batch for c in child.chunks())
    finally:
        child.stop()

    writer = ProductWriter(organization_id=org.id, mode="upsert", dry_run=False, atomic=False)
    try:
        writer.open()
        assert writer.all_new  # an empty catalogue: no SKU of the file can exist yet
        assert writer.write(first).created == 4
        # meanwhile someone else adds a SKU of the next batch
        Product.objects.create(
            organization=org, sku="SKU-000006", name="Other", price=Decimal("1.00")
        )
        result = writer.write(second)
        assert (result.created, result.updated, result.errors) == (3, 1, [])
        assert not writer.all_new  # from now on every batch probes
        writer.close(commit=True)
    finally:
        connection.close()  # the writer's session settings and temp table go with it
    assert Product.objects.filter(organization=org).count() == 8
    assert Product.objects.get(organization=org, sku="SKU-000006").name == "Product 6"

    again = ProductWriter(organization_id=org.id, mode="upsert", dry_run=False, atomic=False)
    try:
        again.open()
        assert not again.all_new  # the catalogue has products: probe from the start
    finally:
        connection.close()


@pytest.mark.parametrize("merge", [True, False], ids=["merge", "probe-then-update"])
def test_a_mixed_upsert_batch_counts_new_changed_and_unchanged_rows_exactly(org, tmp_path, merge):
    """Both upsert paths: one MERGE a batch (PostgreSQL 17 and later) and the probe + COPY +
    UPDATE that older servers use."""
    from decimal import Decimal

    from imports.pipeline.validator_process import ValidatorProcess
    from imports.pipeline.writers import ProductWriter

    rows = list(product_rows(8))  # SKU-000001 .. 8: the first 4 exist, the other 4 are new
    for sku, name, description, price, currency, quantity, *_ in rows[:4]:
        Product.objects.create(
            organization=org,
            sku=sku,
            name=name,
            description=description,
            # SKU-000002 as in the file; the other three at another price
            price=Decimal(price if sku == "SKU-000002" else "1.00"),
            currency=currency,
            quantity=int(quantity),
            category="Widgets",
            brand="Acme",
            status="active",
        )
    path = tmp_path / "mixed.csv"
    path.write_bytes(csv_bytes(rows))
    child = ValidatorProcess(
        path=path, filename="mixed.csv", total=8, batch_size=8, organization_id=org.id
    )
    child.start()
    try:
        (chunk,) = child.chunks()
    finally:
        child.stop()
    writer = ProductWriter(organization_id=org.id, mode="upsert", dry_run=False, atomic=False)
    try:
        writer.open()
        assert not writer.all_new
        if not merge:
            writer.merge = False
        elif not writer.merge:
            pytest.skip("MERGE ... RETURNING needs PostgreSQL 17")
        first = writer.write(chunk.batch)
        again = writer.write(chunk.batch)  # the same batch again: nothing left to change
        writer.close(commit=True)
    finally:
        connection.close()
    assert (first.created, first.updated, first.unchanged, first.errors) == (4, 3, 1, [])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 8)
    assert Product.objects.filter(organization=org).count() == 8
    assert set(Product.objects.filter(organization=org).values_list("price", flat=True)) == {
        Decimal("9.99")
    }
    # the COPY leaves the timestamps to the table's defaults; an update moves updated_at only
    new = Product.objects.get(organization=org, sku="SKU-000007")
    changed = Product.objects.get(organization=org, sku="SKU-000001")
    kept = Product.objects.get(organization=org, sku="SKU-000002")
    assert new.created_at is not None and new.updated_at is not None
    assert changed.created_at < changed.updated_at
    assert kept.updated_at < changed.updated_at  # unchanged: not written
    assert changed.created_at < new.created_at
