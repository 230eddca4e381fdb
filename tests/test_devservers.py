"""The README's run command: `python -m config.devservers run` (what `make run` runs)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from config.devservers import free_port, wait_for_port
from tests.fixtures.services import ROOT
from tests.fixtures.services import testing_database_url as database_url


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("how", "sig"),
    [("Ctrl-C to the process group", signal.SIGINT), ("kill, to the parent", signal.SIGTERM)],
)
def test_a_stop_signal_stops_web_worker_and_private_redis_in_order(
    transactional_db, tmp_path, how, sig
):
    """Ctrl-C reaches the terminal's whole foreground process group. The worker's warm
    shutdown still needs Redis, so the private Redis must not stop with everything else:
    only once daphne and the worker are gone. Nothing is left running, nothing fails. The
    command starts with SIGINT ignored, as a script's background job does: it still stops."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),  # the test database; Redis: a private one
        "INTAKE_PORT": str(port),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    env.pop("REDIS_URL", None)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "config.devservers", "run"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal gives it
            preexec_fn=_ignore_sigint,
        )
        try:
            wait_for_port(port, timeout=90)
            assert httpx.get(f"http://127.0.0.1:{port}/admin/login/").status_code == 200
            deadline = time.monotonic() + 30
            while b"Listening on high" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            started = psutil.Process(run.pid).children(recursive=True)
            assert any(p.name().startswith("redis-server") for p in started)
            if sig == signal.SIGINT:
                os.killpg(run.pid, sig)
            else:
                run.send_signal(sig)
            try:
                assert run.wait(60) == 0
            except subprocess.TimeoutExpired:
                left = [
                    (p.pid, p.name(), p.status()) for p in psutil.Process(run.pid).children(True)
                ]
                pytest.fail(f"still running after 60 s: {left}\n{log.read_text()[-3000:]}")
        finally:
            if run.poll() is None:  # failed: leave nothing running (each child has a session)
                for p in [*psutil.Process(run.pid).children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
                os.killpg(run.pid, signal.SIGKILL)
    output = log.read_text()
    assert "warm shut down requested" in output
    assert "Traceback" not in output and "Connection refused" not in output, output[-3000:]
    assert "Cold shut down" not in output
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == [], [p.name() for p in alive]


# ---------------------------------------------------------------- the test command's two runs


def test_the_test_command_fails_when_either_run_fails_and_not_when_one_collects_nothing():
    from config.devservers import _combined

    assert _combined(0, 0) == 0
    assert _combined(0, 5) == 0 and _combined(5, 0) == 0  # paths that pick one kind only
    assert _combined(5, 5) == 5  # nothing collected at all is a failure
    assert _combined(1, 0) == 1 and _combined(0, 1) == 1 and _combined(5, 2) == 2


def test_the_browser_run_gets_databases_and_channels_of_its_own():
    from config.devservers import _apart

    apart = _apart(
        {
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/intake",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert apart == {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/intake_browser",
        "REDIS_URL": "redis://127.0.0.1:6379/1",
        "CHANNEL_LAYER_PREFIX": "intake:layer:browser",
    }
