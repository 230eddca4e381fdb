"""Every new endpoint and page, tried by another tenant, a viewer and an anonymous caller.

Another organization's object is a 404 (never a 403 that confirms it exists, never its data);
viewers read but do not act; only organization admins change the store settings; anonymous API
calls are 401 and anonymous pages redirect to the login page.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from rest_framework.test import APIClient

from enrichment.models import Bom, BomLine, Project
from imports.models import ImportJob, ImportRowError, JobKind, JobStatus, Role
from imports.purchasing.models import PurchaseOrder, PurchaseOrderLine
from tests.fixtures.accounts import PASSWORD, member, token_client
from tests.fixtures.enrichment import make_component

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # every test makes users: the default hasher's cost would dominate this matrix
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def objects(org, operator):
    """One of each new kind of object, all in ``org`` (the tenant the outsider is not in)."""
    project = Project.objects.create(organization=org, name="Widget")
    bom = Bom.objects.create(organization=org, project=project, name="Main board", line_count=1)
    line = BomLine.objects.create(bom=bom, line_number=2, mpn="LM358D", quantity=2)
    component = make_component(org, "Texas Instruments", "LM358D", stock=10, price="0.20")
    job = ImportJob.objects.create(
        organization=org,
        kind=JobKind.PRODUCT_IMPORT,
        status=JobStatus.COMPLETED,
        original_filename="products.csv",
    )
    ImportRowError.objects.create(job=job, row_number=2, message="price is required", values=["a"])
    export = ImportJob.objects.create(
        organization=org,
        kind=JobKind.EXPORT,
        status=JobStatus.COMPLETED,
        original_filename="products.csv",
    )
    export.file.save("export.csv", ContentFile(b"sku,name\nSECRET-1,Secret\n"))
    po_job = ImportJob.objects.create(
        organization=org, kind=JobKind.PURCHASE_ORDER, status=JobStatus.FAILED
    )
    order = PurchaseOrder.objects.create(
        organization=org, job=po_job, po_number="PO-SECRET", status="failed", line_count=1
    )
    PurchaseOrderLine.objects.create(order=order, line_number=1, sku="SECRET-SKU")
    return {
        "bom": bom.id,
        "line": line.id,
        "component": component.id,
        "project": project.id,
        "job": job.id,
        "export": export.id,
        "order": order.id,
        "po_job": po_job.id,
    }


# (method, path template, body) of every API route that names one object of a tenant
OBJECT_API = [
    ("get", "/api/v1/boms/{bom}", None),
    ("get", "/api/v1/boms/{bom}/lines", None),
    ("patch", "/api/v1/boms/{bom}/lines/{line}", {"component_id": "{component}"}),
    ("get", "/api/v1/boms/{bom}/export", None),
    ("get", "/api/v1/boms/{bom}/export?format=xlsx", None),
    ("post", "/api/v1/boms/{bom}/enrichment/start", {}),
    ("get", "/api/v1/purchase-orders/{order}", None),
    ("get", "/api/v1/purchase-orders/{order}/lines", None),
    ("post", "/api/v1/purchase-orders/{order}/review", {"confirm": True}),
    ("post", "/api/v1/purchase-orders/{order}/retry", None),
    ("get", "/api/v1/products/import/{job}", None),
    ("get", "/api/v1/products/import/{job}/errors", None),
    ("get", "/api/v1/products/import/{job}/errors.csv", None),
    ("post", "/api/v1/products/import/{job}/fix", {"rows": [{"row": 2, "values": ["b"]}]}),
    ("post", "/api/v1/products/import/{job}/retry", None),
    ("get", "/api/v1/products/export/{export}/download", None),
    ("get", "/api/v1/jobs/{job}", None),
    ("get", "/api/v1/jobs/{export}", None),
    ("get", "/api/v1/jobs/{job}/errors", None),
    ("get", "/api/v1/jobs/{job}/errors.csv", None),
    ("post", "/api/v1/jobs/{job}/cancel", None),
    ("post", "/api/v1/jobs/{po_job}/retry", None),
]

OBJECT_PAGES = [
    ("get", "/boms/{bom}/", None),
    ("post", "/boms/{bom}/start", {"priority": "5"}),
    ("post", "/boms/{bom}/resolve", {"line": "{line}", "component": "{component}"}),
    ("get", "/purchase-orders/{order}/", None),
    ("post", "/purchase-orders/{order}/review", {"confirm": "1"}),
    ("post", "/purchase-orders/{order}/retry", None),
    ("get", "/jobs/{job}/", None),
    ("get", "/jobs/{job}/mapping/", None),
    ("post", "/jobs/{job}/fix/", {"row": "2", "w2": "1", "r2_0": "b"}),
]

LIST_API = [
    "/api/v1/components",
    "/api/v1/projects",
    "/api/v1/boms",
    "/api/v1/purchase-orders",
    "/api/v1/jobs",
    "/api/v1/products",
    "/api/v1/products/export",
    "/api/v1/products/import/status",
    "/api/v1/organization/store",
]

LIST_PAGES = ["/boms/", "/components/", "/purchase-orders/", "/export/", "/"]

SECRETS = ("LM358D", "Main board", "PO-SECRET", "SECRET-SKU", "SECRET-1", "Widget")


def fill(template, ids):
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {k: fill(v, ids) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, ids) for v in template]
    return template


def call(client, method, path, body):
    if body is None:
        return getattr(client, method)(path)
    if isinstance(client, APIClient):
        return getattr(client, method)(path, body, format="json")
    return getattr(client, method)(path, body)


def body_of(resp) -> str:
    if getattr(resp, "streaming", False):
        return b"".join(resp.streaming_content).decode(errors="replace")
    return resp.content.decode(errors="replace")


def assert_no_secret(resp):
    text = body_of(resp)
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{resp.status_code} leaks {leaked}: {text[:300]}"


@pytest.fixture
def outsider_browser(outsider):
    client = Client()
    client.login(username=outsider.username, password=PASSWORD)
    return client


@pytest.mark.parametrize(("method", "path", "body"), OBJECT_API, ids=lambda v: str(v)[:40])
def test_another_tenants_object_is_a_404_through_the_api(objects, outsider_api, method, path, body):
    resp = call(outsider_api, method, fill(path, objects), fill(body, objects))
    assert resp.status_code == 404, body_of(resp)[:300]
    assert_no_secret(resp)


@pytest.mark.parametrize(("method", "path", "body"), OBJECT_PAGES, ids=lambda v: str(v)[:40])
def test_another_tenants_object_is_a_404_on_the_pages(
    objects, outsider_browser, method, path, body
):
    resp = call(outsider_browser, method, fill(path, objects), fill(body, objects))
    assert resp.status_code == 404, body_of(resp)[:300]
    assert_no_secret(resp)


@pytest.mark.parametrize("path", LIST_API)
def test_lists_show_nothing_of_another_tenant(objects, outsider_api, path):
    resp = outsider_api.get(path)
    assert resp.status_code in (200, 202), body_of(resp)[:300]
    assert_no_secret(resp)


@pytest.mark.parametrize("path", LIST_PAGES)
def test_list_pages_show_nothing_of_another_tenant(objects, outsider_browser, path):
    resp = outsider_browser.get(path)
    assert resp.status_code == 200
    assert_no_secret(resp)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/boms/{bom}",
        "/api/v1/purchase-orders/{order}",
        "/api/v1/products/import/{job}",
    ],
)
def test_naming_the_other_organization_does_not_open_its_objects(objects, outsider_api, org, path):
    """The organization selector only picks among the caller's own memberships."""
    for selector in (str(org.id), org.slug):
        resp = outsider_api.get(fill(path, objects), HTTP_X_ORGANIZATION=selector)
        assert resp.status_code in (403, 404)
        assert_no_secret(resp)


def test_start_with_the_other_organization_in_the_body_is_a_404(objects, api, other_org):
    resp = api.post(
        f"/api/v1/boms/{objects['bom']}/enrichment/start",
        {"organization_id": other_org.id},
        format="json",
    )
    assert resp.status_code == 404


# ------------------------------------------------------------------------- roles

VIEWER_REFUSED = [
    ("post", "/api/v1/boms/{bom}/enrichment/start", {}),
    ("patch", "/api/v1/boms/{bom}/lines/{line}", {"component_id": "{component}"}),
    ("post", "/api/v1/projects", {"name": "New"}),
    ("post", "/api/v1/purchase-orders/{order}/review", {"confirm": True}),
    ("post", "/api/v1/purchase-orders/{order}/retry", None),
    ("post", "/api/v1/products/import/{job}/fix", {"rows": [{"row": 2, "values": ["b"]}]}),
    ("post", "/api/v1/products/import/{job}/retry", None),
    ("post", "/api/v1/jobs/{job}/cancel", None),
    ("post", "/api/v1/jobs/{po_job}/retry", None),
    ("patch", "/api/v1/organization/store", {"url": "", "secret": ""}),
]


@pytest.mark.parametrize(("method", "path", "body"), VIEWER_REFUSED, ids=lambda v: str(v)[:40])
def test_viewers_cannot_act(objects, viewer_api, method, path, body):
    resp = call(viewer_api, method, fill(path, objects), fill(body, objects))
    assert resp.status_code == 403, body_of(resp)[:300]
    assert "viewer" in resp.json()["detail"]


VIEWER_READS = [
    "/api/v1/boms/{bom}",
    "/api/v1/boms/{bom}/lines",
    "/api/v1/boms/{bom}/export",
    "/api/v1/purchase-orders/{order}",
    "/api/v1/purchase-orders/{order}/lines",
    "/api/v1/products/import/{job}/errors",
    "/api/v1/jobs/{job}/errors",
    "/api/v1/jobs/{job}/errors.csv",
    "/api/v1/products/export/{export}/download",
    "/api/v1/organization/store",
    "/api/v1/components",
]


@pytest.mark.parametrize("path", VIEWER_READS)
def test_viewers_read(objects, viewer_api, path):
    assert viewer_api.get(fill(path, objects)).status_code == 200


def test_viewer_pages_show_no_action_and_refuse_one(objects, viewer):
    client = Client()
    client.login(username=viewer.username, password=PASSWORD)
    resp = client.post(f"/boms/{objects['bom']}/start", {"priority": "5"}, follow=True)
    assert resp.status_code == 200
    assert "can watch BOMs but not change them" in resp.content.decode()
    assert not ImportJob.objects.filter(kind=JobKind.BOM_ENRICHMENT).exists()


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER])
def test_only_organization_admins_change_the_store(org, role):
    client = token_client(member(org, f"u-{role}", role))
    resp = client.patch(
        "/api/v1/organization/store",
        {"url": "https://shop.example.com/hook", "secret": "s" * 20},
        format="json",
    )
    assert resp.status_code == 403
    assert "admin" in resp.json()["detail"]


def test_an_admin_changes_the_store(org, settings):
    settings.SYNC_ALLOWED_HOSTS = ["127.0.0.1"]
    client = token_client(member(org, "ada", Role.ADMIN))
    resp = client.patch(
        "/api/v1/organization/store",
        {"url": "http://127.0.0.1:9/hook", "secret": "s" * 20},
        format="json",
    )
    assert resp.status_code == 200 and resp.json()["secret_set"] is True
    assert "s" * 20 not in resp.content.decode()


# ------------------------------------------------------------------------- anonymous

ANON_API = [("get", p, None) for p in LIST_API + [t for _, t, _ in OBJECT_API if "{" in t]] + [
    ("post", "/api/v1/components/import", None),
    ("post", "/api/v1/boms", None),
    ("post", "/api/v1/purchase-orders", None),
    ("post", "/api/v1/products/import/preview", None),
    ("post", "/api/v1/realtime/tokens", None),
    ("get", "/api/v1/realtime/poll", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ANON_API, ids=lambda v: str(v)[:40])
def test_anonymous_api_calls_are_401(objects, method, path, body):
    resp = call(APIClient(), method, fill(path, objects).split("?")[0], body)
    assert resp.status_code == 401, body_of(resp)[:200]
    assert_no_secret(resp)


@pytest.mark.parametrize(
    "path", LIST_PAGES[:-1] + [p for m, p, _ in OBJECT_PAGES if m == "get"] + ["/realtime/"]
)
def test_anonymous_pages_redirect_to_login(objects, path):
    resp = Client().get(fill(path, objects))
    assert resp.status_code == 302
    assert "/login/" in resp["Location"]


@pytest.mark.parametrize(("method", "path", "body"), OBJECT_PAGES, ids=lambda v: str(v)[:40])
def test_anonymous_page_actions_change_nothing(objects, method, path, body):
    resp = call(Client(), method, fill(path, objects), fill(body, objects))
    assert resp.status_code in (302, 405)
    if resp.status_code == 302:
        assert "/login/" in resp["Location"]
    assert not ImportJob.objects.exclude(pk__in=[objects["job"], objects["export"]]).exclude(
        kind=JobKind.PURCHASE_ORDER
    )


def test_the_export_file_is_served_to_its_tenant(objects, api):
    resp = api.get(f"/api/v1/products/export/{objects['export']}/download")
    assert resp.status_code == 200
    assert "SECRET-1" in body_of(resp)
    assert Path(ImportJob.objects.get(pk=objects["export"]).file.path).exists()


VIEWER_PAGE_ACTIONS = [
    ("/boms/", {"name": "New", "file": "bom"}),
    ("/boms/", {"action": "project", "name": "New project"}),
    ("/components/", {"file": "components"}),
    ("/purchase-orders/", {"file": "order"}),
    ("/boms/{bom}/start", {"priority": "5"}),
    ("/boms/{bom}/resolve", {"line": "{line}", "component": "{component}"}),
    ("/purchase-orders/{order}/review", {"confirm": "1"}),
    ("/purchase-orders/{order}/retry", {}),
    ("/jobs/{job}/fix/", {"row": "2", "w2": "1", "r2_0": "b"}),
]


@pytest.mark.parametrize(("path", "data"), VIEWER_PAGE_ACTIONS, ids=lambda v: str(v)[:30])
def test_viewers_cannot_act_on_the_pages(objects, viewer, path, data):
    from imports.purchasing.models import WorkflowStage
    from tests.fixtures.enrichment import bom_csv, components_csv
    from tests.fixtures.files import upload

    files = {
        "bom": lambda: upload(bom_csv([["R1", "1", "LM358D", "TI", "", ""]]), "b.csv"),
        "components": lambda: upload(components_csv([["TI", "X1"] + [""] * 10]), "c.csv"),
        "order": lambda: upload(b"sku,quantity,unit_cost\nA,1,2\n", "o.csv"),
    }
    data = {k: files[v]() if k == "file" else fill(v, objects) for k, v in data.items()}
    client = Client()
    client.login(username=viewer.username, password=PASSWORD)
    before = (
        ImportJob.objects.count(),
        Bom.objects.count(),
        Project.objects.count(),
        PurchaseOrder.objects.count(),
        WorkflowStage.objects.count(),
        BomLine.objects.filter(component__isnull=False).count(),
    )
    resp = client.post(fill(path, objects), data)
    assert resp.status_code in (302, 403), resp.status_code
    after = (
        ImportJob.objects.count(),
        Bom.objects.count(),
        Project.objects.count(),
        PurchaseOrder.objects.count(),
        WorkflowStage.objects.count(),
        BomLine.objects.filter(component__isnull=False).count(),
    )
    assert after == before
    assert PurchaseOrder.objects.get(pk=objects["order"]).status == "failed"


@pytest.mark.parametrize("path", ["/realtime/", "/realtime/data", "/metrics"])
def test_staff_pages_are_not_for_organization_members(objects, operator, path):
    client = Client()
    client.login(username=operator.username, password=PASSWORD)
    resp = client.get(path)
    assert resp.status_code in (302, 403)
    if resp.status_code == 302:
        assert "login" in resp["Location"]


@pytest.mark.parametrize(
    "path",
    [
        "/boms/{bom}/start",
        "/purchase-orders/{order}/retry",
        "/jobs/{job}/fix/",
        "/api/v1/boms/{bom}/enrichment/start",
        "/api/v1/purchase-orders/{order}/retry",
    ],
)
def test_a_cross_site_post_with_the_session_cookie_is_refused(objects, operator, path):
    client = Client(enforce_csrf_checks=True)
    client.login(username=operator.username, password=PASSWORD)
    resp = client.post(fill(path, objects), {"priority": "5"})
    assert resp.status_code == 403
    assert not ImportJob.objects.filter(kind=JobKind.BOM_ENRICHMENT).exists()
    assert ImportJob.objects.get(pk=objects["job"]).status == JobStatus.COMPLETED
