from __future__ import annotations

import pytest

from imports.models import Role
from imports.purchasing.models import StoreConnection
from tests.fixtures.accounts import member, token_client
from tests.purchasing.store_server import StoreServer


@pytest.fixture
def store_server():
    server = StoreServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def local_outbound(monkeypatch, settings):
    """Let this test's workers and services call 127.0.0.1 (refused by default)."""
    monkeypatch.setenv("SYNC_ALLOWED_HOSTS", "127.0.0.1")
    settings.SYNC_ALLOWED_HOSTS = ["127.0.0.1"]


@pytest.fixture
def fast_sync(monkeypatch, settings):
    """Short timeouts and backoff for the worker processes these tests start."""
    for name, value in {
        "PO_SYNC_TIMEOUT": "1.5",
        "PO_SYNC_BACKOFF_BASE": "0.05",
        "PO_SYNC_BACKOFF_MAX": "0.2",
        "PO_SYNC_MAX_ATTEMPTS": "4",
        "PO_IMAGE_TIMEOUT": "2",
    }.items():
        monkeypatch.setenv(name, value)
        setattr(settings, name, float(value) if "." in value else int(value))


@pytest.fixture
def store(org, store_server, local_outbound):
    return StoreConnection.objects.create(
        organization=org, url=store_server.url, secret=store_server.secret
    )


@pytest.fixture
def org_admin(org):
    return member(org, "ada", Role.ADMIN)


@pytest.fixture
def admin_api(org_admin):
    return token_client(org_admin)
