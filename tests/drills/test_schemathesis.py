"""A bounded schemathesis run over ``/api/schema/`` against a real daphne and a catalogue big
enough that an unbounded query hurts: no server errors, responses as the schema says, and the
server's memory stays bounded.

Bounded: a dozen examples per operation and no deadline per example, so the whole run
takes a minute or two on a shared 2-core machine, most of them reading the endless event streams
for a second per case (``SCHEMATHESIS_EXAMPLES`` to go further).
"""

from __future__ import annotations

import json
import os
import uuid

import psutil
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.db import connection
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from imports.models import Membership, Organization, Product, Role
from tests.fixtures.services import Daphne

PRODUCTS = int(os.environ.get("SCHEMATHESIS_PRODUCTS", "200000"))
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))
# what daphne may grow by over the whole run: a page of products is at most 500 rows; an
# unbounded ?limit= over 200k products costs several hundred MB
RSS_GROWTH_MAX = 150 * 1024 * 1024


# The test database (not the development one) is made for this module by the marker; each
# test only reads (through daphne), and the data below is committed once for the module.
pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def fuzz_data(django_db_setup, django_db_blocker):
    """An organization with an operator, a token and ``PRODUCTS`` products, committed for the
    daphne process to see (COPY: a few seconds), removed after the module."""
    with django_db_blocker.unblock():
        org = Organization.objects.create(name="Fuzz", slug=f"fuzz-{uuid.uuid4().hex[:8]}")
        user = get_user_model().objects.create_user(f"fuzz-{org.slug}", password="pw-123456")
        Membership.objects.create(user=user, organization=org, role=Role.OPERATOR)
        token = Token.objects.create(user=user).key
        with connection.cursor() as wrapper:
            cols = "organization_id, sku, name, description, price, currency, quantity, "
            cols += "barcode, category, brand, status, created_at, updated_at"
            with wrapper.cursor.copy(f"COPY imports_product ({cols}) FROM STDIN") as copy:
                for i in range(PRODUCTS):
                    row = (org.id, f"F-{i:07d}", f"Product {i}", "A product", "9.99", "EUR")
                    row += (i % 100, "", "Widgets", "Acme", "active")
                    copy.write_row([*row, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"])
            wrapper.execute("ANALYZE imports_product")
        yield {"org": org, "token": token}
        Product.objects.filter(organization=org).delete()
        org.delete()
        user.delete()


@pytest.fixture(scope="module")
def fuzz_daphne(daphne_env):
    server = Daphne({**daphne_env, "LOG_LEVEL": "ERROR"})
    server.start()
    process = psutil.Process(server.proc.pid)
    server.rss_start = process.memory_info().rss
    server.rss_peak = server.rss_start
    yield server
    server.stop()


def _generated_schema() -> dict:
    """The OpenAPI document ``/api/schema/`` serves, generated in-process at collection."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


def _schema(mode: GenerationMode):
    loaded = schemathesis.openapi.from_dict(_generated_schema())
    loaded.config.generation.update(modes=[mode], max_examples=EXAMPLES)
    # /ws/v1/stream/ documents the WebSocket protocol (101 Switching Protocols): schemathesis
    # speaks plain HTTP, and a plain GET of a WebSocket route is no request of that protocol
    return loaded.exclude(path_regex=r"^/ws/")


valid_schema = _schema(GenerationMode.POSITIVE)
invalid_schema = _schema(GenerationMode.NEGATIVE)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: a failure is reproducible
    database=None,
)


def _streams(case) -> bool:
    ok = case.operation.definition.raw.get("responses", {}).get("200", {})
    return "text/event-stream" in ok.get("content", {})


def _call(case, fuzz_daphne, fuzz_data, **kwargs):
    case.call_and_validate(
        base_url=fuzz_daphne.url,
        headers={"Authorization": f"Token {fuzz_data['token']}"},
        # an event stream never ends: schemathesis reads it for this long (or 20 events) and
        # checks the frames it got; 1 s holds the first frames (retry, snapshot)
        timeout=1 if _streams(case) else 30,
        **kwargs,
    )
    rss = psutil.Process(fuzz_daphne.proc.pid).memory_info().rss
    fuzz_daphne.rss_peak = max(fuzz_daphne.rss_peak, rss)


UPLOADS = {
    ("POST", "/api/v1/products/import"),
    ("POST", "/api/v1/products/import/preview"),
    ("POST", "/api/v1/components/import"),
    ("POST", "/api/v1/boms"),
    ("POST", "/api/v1/purchase-orders"),
}


@valid_schema.parametrize()
@SETTINGS
def test_valid_requests_get_answers_that_match_the_schema(case, fuzz_daphne, fuzz_data):
    excluded = []
    if (case.method, case.operation.path) in UPLOADS:
        # a schema-valid upload is any file: whether it is a product (component, BOM, order)
        # file is not a schema matter, and a 400 naming what is wrong with it is the right answer
        excluded = [positive_data_acceptance]
    _call(case, fuzz_daphne, fuzz_data, excluded_checks=excluded)


@invalid_schema.parametrize()
@SETTINGS
def test_invalid_requests_never_get_a_server_error(case, fuzz_daphne, fuzz_data):
    _call(case, fuzz_daphne, fuzz_data, checks=[not_a_server_error])


def test_the_request_that_killed_the_server_is_one_bounded_page(fuzz_daphne, fuzz_data):
    """The fuzzing run's find on 1.2M products: ``?limit=29607110478293`` (daphne grew to
    23 GB and was killed). Here on PRODUCTS products: one capped page, memory flat."""
    import httpx

    process = psutil.Process(fuzz_daphne.proc.pid)
    before = process.memory_info().rss
    for param in ("limit", "page_size"):
        resp = httpx.get(
            f"{fuzz_daphne.url}/api/v1/products",
            params={param: "29607110478293"},
            headers={"Authorization": f"Token {fuzz_data['token']}"},
            timeout=60,
        )
        assert resp.status_code == 200
        body = resp.json()
        assert body["count"] == PRODUCTS and len(body["results"]) == body["limit"] <= 500
    grown = process.memory_info().rss - before
    fuzz_daphne.rss_peak = max(fuzz_daphne.rss_peak, process.memory_info().rss)
    assert grown < 50 * 1024 * 1024, f"daphne grew by {grown / 1e6:.0f} MB"


def test_the_server_stayed_small(fuzz_daphne):
    grown = fuzz_daphne.rss_peak - fuzz_daphne.rss_start
    assert fuzz_daphne.proc.poll() is None, "daphne died during the run"
    assert grown < RSS_GROWTH_MAX, f"daphne grew by {grown / 1e6:.0f} MB"
