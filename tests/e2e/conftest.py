"""Browser tests: Playwright driving Debian's Chromium against a real daphne and a real worker.

They run in their own pytest process (``-m browser``, with DJANGO_ALLOW_ASYNC_UNSAFE set), as
config.devservers arranges: Playwright's sync API and pytest-asyncio's loop do not mix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.services import ROOT, Daphne, testing_database_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"


@pytest.fixture(scope="session")
def shared_media(tmp_path_factory):
    return str(tmp_path_factory.mktemp("media"))


@pytest.fixture(autouse=True)
def media_root(shared_media, settings):
    # one MEDIA_ROOT for the test process, daphne and the worker: uploads made anywhere are
    # found by the worker
    settings.MEDIA_ROOT = shared_media
    return shared_media


@pytest.fixture(scope="session")
def e2e_env(django_db_setup, shared_media):
    return {
        **os.environ,
        "DATABASE_URL": testing_database_url(),
        "MEDIA_ROOT": shared_media,
        "REALTIME_HEARTBEAT_SECONDS": "2",
        # the browser module's reconnect and fallback-poll timings (3 s and 30 s by default)
        "REALTIME_BROWSER_RETRY_MS": "1000",
        "REALTIME_BROWSER_POLL_MS": "1000",
        "LOG_LEVEL": "WARNING",
        # purchase orders sync to a local stand-in store (refused by default as loopback)
        "SYNC_ALLOWED_HOSTS": "127.0.0.1",
    }


@pytest.fixture(scope="session")
def server(e2e_env):
    daphne = Daphne(e2e_env)
    daphne.start()
    yield daphne
    daphne.stop()


@pytest.fixture(scope="session")
def worker_process(e2e_env):
    log = (ROOT / "var" / "e2e-worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "high", "default", "low"],
        cwd=ROOT,
        env=e2e_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield proc
    proc.terminate()
    proc.wait(15)


@pytest.fixture
def live_site(server, worker_process, transactional_db):
    assert worker_process.poll() is None, "the rqworker died: see var/e2e-worker.log"
    return server


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, live_site):
    contexts = []

    def make(viewport=None) -> Page:
        context = browser.new_context(
            base_url=live_site.url,
            viewport=viewport or {"width": 1280, "height": 900},
            accept_downloads=True,
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page: Page, user) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#conn")).to_have_text("Live")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def mark_page(page: Page) -> None:
    """Tag the document: the tag survives anything but a reload or a navigation."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"
