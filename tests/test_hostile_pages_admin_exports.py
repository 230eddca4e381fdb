"""Found by reading the pages, the admin, the exports and the mapping step for inputs that
break them: downloads read whole into memory, headers too wide for the pages built on them,
values PostgreSQL refuses, a secret shown to staff who may only view, a learned choice that
reached across organizations, and a preview that disagreed with the import."""

from __future__ import annotations

import csv
import io
import json

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.test import AsyncClient
from openpyxl import load_workbook
from rest_framework.authtoken.models import Token

from enrichment.models import BomLine, LearnedMatch
from imports import services
from imports.models import ImportJob, Product
from imports.pipeline.export import xlsx_text
from imports.pipeline.mapping import PRODUCT_SPEC, MappingError, resolve
from imports.pipeline.validation import FIELDS
from imports.purchasing.models import StoreConnection
from tests.enrichment.test_api import enrich, post_bom
from tests.fixtures.enrichment import make_component
from tests.fixtures.files import HEADER, csv_bytes, product_rows, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _failed_job(api, run_worker, rows, header=HEADER, mapping=None):
    fields = {"file": upload(csv_bytes(rows, header=header)), "mode": "upsert"}
    if mapping is not None:
        fields["mapping"] = json.dumps(mapping)
    resp = api.post("/api/v1/products/import", fields, format="multipart")
    assert resp.status_code == 202, resp.content
    run_worker()
    return ImportJob.objects.get(pk=resp.json()["id"])


# ---------------------------------------------------------------- downloads under ASGI


def _get_async(operator, url):
    """``url`` as daphne serves it (an ASGI request): the response and its whole body."""
    key = Token.objects.get_or_create(user=operator)[0].key

    async def fetch():
        resp = await AsyncClient().get(url, headers={"Authorization": f"Token {key}"})
        assert resp.status_code == 200, resp.content
        body = b"".join([chunk async for chunk in resp.streaming_content])
        return resp, body

    return async_to_sync(fetch)()


def test_error_csv_streams_a_block_at_a_time_under_asgi(api, operator, run_worker):
    """Django reads a sync iterator whole into a list under ASGI: a job's millions of row
    errors were one list before the first byte went out."""
    rows = list(product_rows(300))
    for row in rows:
        row[3] = " =HYPERLINK(1)"  # a failing price, and a formula behind a space
    job = _failed_job(api, run_worker, rows)
    assert job.failed_rows == 300
    resp, body = _get_async(operator, f"/api/v1/jobs/{job.id}/errors.csv")
    assert resp.status_code == 200 and resp.is_async
    lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(lines) == 301 and lines[1][0] == "2"
    assert lines[1][2 + HEADER.index("price")] == "' =HYPERLINK(1)"  # quoted, not a formula


def test_bom_exports_stream_under_asgi(api, operator, org):
    make_component(org, "Yageo", "RC0603FR-0710KL", stock=100, price="0.01")
    rows = [(f"R{i}", "1", "RC0603FR-0710KL", "Yageo", "10k \ufffe", "") for i in range(1, 40)]
    bom = post_bom(api, rows=rows).json()["id"]
    enrich(api, bom)
    resp, body = _get_async(operator, f"/api/v1/boms/{bom}/export?format=csv")
    assert resp.status_code == 200 and resp.is_async
    assert body.decode("utf-8-sig").count("\r\n") == 40  # the header and 39 lines
    resp, body = _get_async(operator, f"/api/v1/boms/{bom}/export?format=xlsx")
    assert resp.status_code == 200 and resp.is_async
    assert int(resp["Content-Length"]) == len(body)
    sheet = load_workbook(io.BytesIO(body), read_only=True).active
    assert sum(1 for _ in sheet.iter_rows()) == 40
    assert xlsx_text("a\ufffeb\uffff") == "ab"  # XML 1.0 has no such characters


# ---------------------------------------------------------------- wide headers


def test_a_header_wider_than_the_pages_can_show_is_refused(api):
    wide = [*HEADER, *(f"extra {i}" for i in range(600))]
    resp = api.post(
        "/api/v1/products/import",
        {"file": upload(csv_bytes([], header=wide))},
        format="multipart",
    )
    assert resp.status_code == 400 and "610 columns; at most 500" in resp.json()["detail"]
    long_name = [*HEADER, "x" * 5000]
    resp = api.post(
        "/api/v1/products/import/preview",
        {"file": upload(csv_bytes([], header=long_name))},
        format="multipart",
    )
    assert resp.status_code == 400 and "5,000 characters long" in resp.json()["detail"]


def test_a_mapping_error_stays_small_however_wide_the_header_and_long_the_mapping():
    header = [*HEADER, *(f"{'c' * 900}{i}" for i in range(400))]
    mapping = {f"{'z' * 900}{i}": "sku" for i in range(1000)}
    with pytest.raises(MappingError) as refused:
        resolve(header, mapping, PRODUCT_SPEC)
    message = str(refused.value)
    assert len(message) < 10_000 and "and 970 more" in message and "and 380 more" in message


def test_the_fix_rows_form_of_a_wide_file_is_not_refused_for_its_field_count(
    client, operator, api, run_worker
):
    """50 rows of 40 columns are 2,100 form fields: Django's default limit (1,000) made the
    page's own form a bare 400 and lost the edits."""
    header = [*HEADER, *(f"note {i}" for i in range(30))]
    rows = [[*row, *("n" for _ in range(30))] for row in product_rows(60)]
    for row in rows:
        row[3] = "free"
    mapping = {**{h: h for h in HEADER}, **{f"note {i}": None for i in range(30)}}
    job = _failed_job(api, run_worker, rows, header=header, mapping=mapping)
    assert job.failed_rows == 60
    client.force_login(operator)
    form: dict[str, object] = {"row": [str(n) for n in range(2, 52)]}
    for n, row in zip(range(2, 52), rows, strict=False):
        form[f"w{n}"] = str(len(header))
        form.update({f"r{n}_{i}": v for i, v in enumerate(row)})
        form[f"r{n}_3"] = "1.50"
    resp = client.post(f"/jobs/{job.id}/fix/", form)
    assert resp.status_code == 302, resp.content[:300]
    assert len(ImportJob.objects.get(fixes=job).options["fix_rows"]) == 50


# ---------------------------------------------------------------- the admin and the pages


@pytest.mark.parametrize(
    "url",
    [
        "/admin/imports/product/?q=%00",
        "/admin/imports/product/?status__exact=%00",
        "/admin/imports/importjob/?original_filename=a%00b",
        "/admin/enrichment/bomline/?match_tier=%00",
        "/admin/imports/product/?sku__regex=(",
        "/?anything=%00",
    ],
)
def test_values_postgresql_refuses_are_a_400_not_a_500(staff_client, url):
    resp = staff_client.get(url)
    assert resp.status_code == 400, (url, resp.status_code)
    assert b"NUL" in resp.content or b"refused" in resp.content


@pytest.mark.parametrize(
    "url",
    [
        "/admin/imports/importjob/?created_at__year=10000",
        "/admin/imports/importjob/?created_at__year__gte=0",
        "/admin/imports/product/?updated_at__iso_year=-5",
        "/admin/imports/importjob/?created_at__year=%2B10000",
        "/admin/imports/importjob/?created_at__year__lt=1_0000",
        "/admin/imports/importjob/?created_at__year=%EF%BC%91%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90",
        "/admin/imports/product/?updated_at__iso_year=9999",
    ],
)
def test_a_year_python_cannot_hold_is_a_400_not_a_500(staff_client, url):
    resp = staff_client.get(url)
    assert resp.status_code == 400, (url, resp.status_code)
    assert b"must be a year from 1 to 9999" in resp.content
    # a year that is no number stays Django's to refuse (its own error page, not a 500)
    junk = staff_client.get(url.split("=")[0] + "=" + "9" * 5000)
    assert junk.status_code in (200, 302), junk.status_code
    # a year in range is a filter as before
    ok = staff_client.get(url.split("=")[0] + "=2026")
    assert ok.status_code in (200, 302), ok.status_code


def test_a_form_post_with_a_nul_is_a_400(staff_client, org):
    resp = staff_client.post("/admin/imports/organization/add/", {"name": "A\x00", "slug": "a"})
    assert resp.status_code == 400 and b"'name' holds a NUL" in resp.content


def test_pages_render_while_redis_is_down(api, client, operator, monkeypatch, settings):
    """The pages read the activity feed and the stream cursor from Redis: down, they were a
    500; the database has what they show."""
    from realtime import log

    job = services.import_job_create(
        organization=operator.memberships.get().organization,
        user=operator,
        upload=upload(csv_bytes(list(product_rows(2)))),
    )
    monkeypatch.setattr(log, "client", _dead_connection)
    client.force_login(operator)
    for url in ("/", "/purchase-orders/", f"/jobs/{job.id}/"):
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.content[:300])
    # a queued job's detail falls back to its row too
    assert api.get(f"/api/v1/jobs/{job.id}").json()["status"] == "queued"
    # and a large export asked for on the page is refused with the queue's reason, not a 500
    import django_rq

    settings.EXPORT_STREAM_MAX_ROWS = 0
    Product.objects.create(organization=job.organization, sku="A1", name="Mug", price="1.00")
    monkeypatch.setattr(django_rq, "get_connection", _dead_connection)
    resp = client.get("/export/?format=csv", follow=True)
    assert resp.status_code == 200 and b"Redis" in resp.content


def test_staff_who_may_only_view_a_store_connection_never_see_its_secret(
    client, django_user_model, org
):
    store = StoreConnection.objects.create(
        organization=org, url="https://shop.example.com/hook", secret="s3cret-signing-key-123"
    )
    clerk = django_user_model.objects.create_user("clerk", password="pw-123456", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_storeconnection"))
    client.force_login(clerk)
    page = client.get(f"/admin/imports/storeconnection/{store.pk}/change/")
    assert page.status_code == 200
    assert b"s3cret-signing-key-123" not in page.content and b"Secret set" in page.content


def test_a_learned_choice_never_brings_another_organizations_part(api, org, other_org):
    """Admin edits could point a learned choice at any organization's part, and the learned
    tier joined it by id alone: that organization's prices and stock came into this BOM."""
    foreign = make_component(other_org, "Globex", "GX-1", stock=5, price="9.99")
    LearnedMatch.objects.create(
        organization=org, mpn_key="GX-1", manufacturer_key="", component=foreign
    )
    bom = post_bom(api, rows=[("U1", "1", "GX-1", "", "", "")]).json()["id"]
    enrich(api, bom)
    line = BomLine.objects.get(bom_id=bom)
    assert line.component_id is None and line.match_status == "not_found"


# ---------------------------------------------------------------- the mapping step


def test_an_upload_cancelled_at_the_mapping_step_cannot_be_retried_unmapped(api, org, operator):
    job = services.import_job_create(
        organization=org,
        user=operator,
        upload=upload(csv_bytes(list(product_rows(2)))),
        stage_only=True,
    )
    assert api.post(f"/api/v1/jobs/{job.id}/cancel").status_code == 200
    resp = api.post(f"/api/v1/jobs/{job.id}/retry")
    assert resp.status_code == 409 and "before its columns were mapped" in resp.json()["detail"]
    job.refresh_from_db()
    assert job.status == "cancelled"


def test_the_preview_compares_typed_values_as_the_import_does(api, org):
    Product.objects.create(
        organization=org, sku="A1", name="Mug", price="10.00", quantity=7, currency="USD"
    )
    content = csv_bytes([["A1", "Mug", "10", "007"]], header=["sku", "name", "price", "quantity"])
    resp = api.post(
        "/api/v1/products/import/preview", {"file": upload(content)}, format="multipart"
    )
    assert resp.status_code == 200, resp.content
    assert resp.json()["rows"][0]["outcome"] == "unchanged"
    assert "quantity" in FIELDS


# ---------------------------------------------------------------- jobs: exports, fixes, detail


def _dead_connection(*args, **kwargs):
    from tests.imports.test_outages import _dead_redis

    return _dead_redis()


def test_an_export_job_is_shared_while_it_runs_and_refused_with_503_when_redis_is_down(
    api, viewer_api, org, run_worker, settings, monkeypatch
):
    """A GET any member may send (a link, a reload) started a catalogue-sized job each time."""
    settings.EXPORT_STREAM_MAX_ROWS = 0
    Product.objects.create(organization=org, sku="A1", name="Mug", price="1.00")
    first = api.get("/api/v1/products/export?format=csv").json()["id"]
    assert viewer_api.get("/api/v1/products/export?format=csv").json()["id"] == first
    other = api.get("/api/v1/products/export?format=xlsx").json()["id"]
    assert other != first
    run_worker()
    assert api.get("/api/v1/products/export?format=csv").json()["id"] != first  # it ended

    import django_rq

    monkeypatch.setattr(django_rq, "get_connection", _dead_connection)
    before = ImportJob.objects.count()
    resp = api.get("/api/v1/products/export?format=csv&status=active")
    assert resp.status_code == 503, resp.content
    assert ImportJob.objects.count() == before


def test_fixing_rows_while_redis_is_down_is_a_503_and_stores_nothing(api, run_worker, monkeypatch):
    rows = list(product_rows(3))
    rows[0][3] = "free"
    job = _failed_job(api, run_worker, rows)
    import django_rq

    monkeypatch.setattr(django_rq, "get_connection", _dead_connection)
    fixed = [*rows[0][:3], "1.00", *rows[0][4:]]
    resp = api.post(
        f"/api/v1/products/import/{job.id}/fix",
        {"rows": [{"row": 2, "values": fixed}]},
        format="json",
    )
    assert resp.status_code == 503, resp.content
    assert not ImportJob.objects.filter(fixes=job).exists()


def test_a_jobs_detail_is_the_database_s_not_a_stale_event(api, org, run_worker):
    from realtime.events import job_topic
    from realtime.publish import publish_now

    job = _failed_job(api, run_worker, list(product_rows(2)))
    assert job.status == "completed"
    stale = {"id": str(job.id), "organization": org.id, "status": "processing", "progress": 40}
    publish_now("job.progress", topics=[job_topic(job.id)], body={"job": stale})
    body = api.get(f"/api/v1/jobs/{job.id}").json()
    assert (body["status"], body["progress"]) == ("completed", 100)


@pytest.mark.parametrize(
    "model", ["purchaseorder", "columnmapping", "syncbatch", "deliveryattempt"]
)
def test_admin_add_pages_of_what_only_the_app_writes_are_not_offered(staff_client, model):
    """Their add forms showed the required organization or order read-only: saving was a 500."""
    assert staff_client.get(f"/admin/imports/{model}/add/").status_code == 403
    assert staff_client.post(f"/admin/imports/{model}/add/", {}).status_code == 403


def test_the_admin_refuses_to_link_two_organizations_objects(staff_client, org, other_org):
    from enrichment.models import Bom, Project

    foreign = make_component(other_org, "Globex", "GX-1")
    resp = staff_client.post(
        "/admin/enrichment/learnedmatch/add/",
        {"organization": org.pk, "mpn_key": "GX-1", "component": foreign.pk},
    )
    assert resp.status_code == 200 and b"belongs to organization" in resp.content
    assert not LearnedMatch.objects.exists()
    theirs = Project.objects.create(organization=other_org, name="Their project")
    bom = Bom.objects.create(organization=org, name="Ours")
    resp = staff_client.post(
        f"/admin/enrichment/bom/{bom.pk}/change/",
        {
            "organization": org.pk,
            "name": "Ours",
            "project": theirs.pk,
            "lines-TOTAL_FORMS": "0",
            "lines-INITIAL_FORMS": "0",
        },
    )
    assert resp.status_code == 200 and b"belongs to organization" in resp.content
    bom.refresh_from_db()
    assert bom.project_id is None


def test_a_short_row_sent_back_unchanged_is_not_a_fix(client, operator, api, run_worker):
    """The form pads a short row to the page's width; compared with the row as stored
    (shorter), every short row counted as corrected and went into a fix job unchanged."""
    rows = [list(r) for r in product_rows(2)]
    rows[0] = rows[0][:2]  # sku and name only: "has 2 values but the header has 10 columns"
    rows[1][3] = "free"
    job = _failed_job(api, run_worker, rows)
    assert job.failed_rows == 2
    client.force_login(operator)
    width = len(HEADER)
    form: dict[str, object] = {"row": ["2", "3"], "w2": str(width), "w3": str(width)}
    form.update({f"r2_{i}": v for i, v in enumerate(rows[0] + [""] * (width - 2))})
    form.update({f"r3_{i}": v for i, v in enumerate(rows[1])})
    form["r3_3"] = "2.00"
    resp = client.post(f"/jobs/{job.id}/fix/", form)
    assert resp.status_code == 302
    assert ImportJob.objects.get(fixes=job).options["fix_rows"] == [3]


def test_an_admin_action_on_more_objects_than_the_bound_is_refused(staff_client, org, settings):
    """'Select all' of a million products and delete listed every one (and what it cascades
    to) on the confirmation page, in the request's memory."""
    settings.ADMIN_ACTION_MAX_OBJECTS = 2
    for sku in ("A1", "A2", "A3"):
        Product.objects.create(organization=org, sku=sku, name="Mug", price="1.00")
    ask = {"action": "delete_selected", "select_across": "1", "index": "0"}
    resp = staff_client.post(
        "/admin/imports/product/", {**ask, "_selected_action": ["1"]}, follow=True
    )
    assert resp.status_code == 200
    assert b"3 objects were selected; an action runs on at most 2" in resp.content
    assert Product.objects.count() == 3
    # within the bound, Django's own confirmation page as before
    two = list(Product.objects.filter(sku__in=["A1", "A2"]).values_list("pk", flat=True))
    resp = staff_client.post(
        "/admin/imports/product/",
        {"action": "delete_selected", "index": "0", "_selected_action": two},
    )
    assert resp.status_code == 200 and b"Delete multiple objects" in resp.content
    # our own actions are bounded too
    ImportJob.objects.all().delete()
    for n in range(3):
        ImportJob.objects.create(organization=org, original_filename=f"f{n}.csv")
    resp = staff_client.post(
        "/admin/imports/importjob/",
        {"action": "cancel_jobs", "select_across": "1", "index": "0", "_selected_action": ["x"]},
        follow=True,
    )
    assert b"3 objects were selected" in resp.content
    assert not ImportJob.objects.filter(cancel_requested_at__isnull=False).exists()
