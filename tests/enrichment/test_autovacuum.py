"""The catalogue's ANALYZE after a load does not wait a whole ``deadlock_timeout`` for an
autovacuum of the table (``catalogue_import._analyze``), against a real autovacuum worker."""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from enrichment import catalogue_import

pytestmark = pytest.mark.django_db(transaction=True)

# an autovacuum of the components table that starts at once and takes seconds: each page it
# reads makes it sleep (cost limit 1, 100 ms a sleep)
_SLOW_AUTOVACUUM = """
ALTER TABLE enrichment_component SET (
    autovacuum_vacuum_insert_threshold = 1, autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1
)"""
_RESET = """
ALTER TABLE enrichment_component RESET (
    autovacuum_vacuum_insert_threshold, autovacuum_vacuum_insert_scale_factor,
    autovacuum_vacuum_cost_delay, autovacuum_vacuum_cost_limit
)"""
_VACUUMING = """
SELECT pid FROM pg_stat_progress_vacuum
WHERE datname = current_database() AND relid = 'enrichment_component'::regclass
"""


def _superuser(cur) -> bool:
    cur.execute("SELECT current_setting('is_superuser') = 'on'")
    return cur.fetchone()[0]


@pytest.fixture
def autovacuum_at_work(org):
    """An autovacuum worker busy on the components table (the server's naptime at 1 s for the
    test, reset after)."""
    with connection.cursor() as cur:
        if not _superuser(cur) or connection.pg_version < 150000:
            pytest.skip("needs a superuser of PostgreSQL 15 or later (ALTER SYSTEM)")
        # ALTER SYSTEM writes the server's own file: what it held before is put back after
        cur.execute(
            "SELECT setting, source = 'configuration file' AND sourcefile LIKE "
            "'%%postgresql.auto.conf' FROM pg_settings WHERE name = 'autovacuum_naptime'"
        )
        naptime, from_auto_conf = cur.fetchone()
        cur.execute("ALTER SYSTEM SET autovacuum_naptime = 1")
        cur.execute("SELECT pg_reload_conf()")
        try:
            cur.execute(_SLOW_AUTOVACUUM)
            cur.execute(
                "INSERT INTO enrichment_component (organization_id, manufacturer, "
                "manufacturer_key, mpn, mpn_key, mpn_norm, mpn_base, mpn_norm_shared, "
                "description, category, package, lifecycle, datasheet_url, stock, moq, "
                "price_breaks, currency, alternates, updated_at) "
                "SELECT %s, 'Acme', 'ACME', 'P' || i, 'P' || i, 'P' || i, 'P' || i, false, "
                "repeat('x', 200), '', '', 'active', '', 1, 1, '[]', 'USD', '[]', now() "
                "FROM generate_series(1, 5000) i",
                [org.id],
            )
            deadline = time.monotonic() + 30
            while True:
                cur.execute(_VACUUMING)
                if cur.fetchone() is not None:
                    break
                if time.monotonic() > deadline:
                    pytest.fail("no autovacuum took the components table within 30 s")
                time.sleep(0.05)
            yield
        finally:
            if from_auto_conf:
                cur.execute(f"ALTER SYSTEM SET autovacuum_naptime = {int(naptime)}")
            else:
                cur.execute("ALTER SYSTEM RESET autovacuum_naptime")
            cur.execute("SELECT pg_reload_conf()")
            cur.execute(_RESET)  # waits for (and so cancels) a slow autovacuum still at work


def test_the_analyze_after_a_load_cancels_an_autovacuum_in_its_way_at_once(autovacuum_at_work):
    started = time.monotonic()
    catalogue_import._analyze(first_load=True)
    took = time.monotonic() - started
    # PostgreSQL cancels the autovacuum once the waiting ANALYZE's deadlock_timeout has
    # passed: 1 s by default (the ANALYZE took 1.01 s without the change), 20 ms in the
    # ANALYZE's transaction
    assert took < 0.75, f"the ANALYZE waited {took:.2f} s for the autovacuum"
    with connection.cursor() as cur:
        cur.execute("SHOW deadlock_timeout")
        assert cur.fetchone()[0] == "1s"  # the session's own setting is untouched


def test_inside_a_caller_s_transaction_the_wait_is_put_back_after_the_analyze(db):
    with transaction.atomic(), connection.cursor() as cur:
        catalogue_import._analyze()
        cur.execute("SHOW deadlock_timeout")
        assert cur.fetchone()[0] == "1s"


def test_a_role_that_may_not_set_the_wait_keeps_the_server_s(db):
    with connection.cursor() as cur:
        if not _superuser(cur) or connection.pg_version < 150000:
            pytest.skip("needs a superuser of PostgreSQL 15 or later (CREATE ROLE)")
        cur.execute("DROP ROLE IF EXISTS intake_test_plain")
        cur.execute("CREATE ROLE intake_test_plain NOLOGIN")
        try:
            with transaction.atomic():
                cur.execute("SET LOCAL ROLE intake_test_plain")
                catalogue_import._autovacuum_yields_soon(cur)  # no error
                cur.execute("SHOW deadlock_timeout")
                assert cur.fetchone()[0] == "1s"
            with transaction.atomic():
                catalogue_import._autovacuum_yields_soon(cur)  # a superuser may
                cur.execute("SHOW deadlock_timeout")
                assert cur.fetchone()[0] == catalogue_import.AUTOVACUUM_WAIT
        finally:
            cur.execute("DROP ROLE intake_test_plain")
