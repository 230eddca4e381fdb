"""A local HTTP server standing in for a merchant's store (and an image host) in tests.

It applies each ``Idempotency-Key`` once, as a real store would: a repeated key gets the first
answer again and is counted as a replay. ``script`` lists what to do with each new request in
turn: ``200``, ``500``, ``(429, retry_after)``, ``("sleep", seconds)`` (apply, then answer
too late: the client times out), ``("hang", event)`` (apply, then wait for ``event``),
``("flood", n)`` (apply, then answer 200 with an ``n``-byte body, as fast as the client reads)
or ``("drip", seconds)`` (apply, then answer 200 with a body of a byte every 50 ms).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from config.devservers import free_port


@dataclass
class Received:
    key: str
    signature: str
    body: bytes
    answered: int | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class StoreServer:
    secret: str = "s3cret-signing-key-0123"
    script: list[Any] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    applied: dict[str, bytes] = field(default_factory=dict)
    replays: list[str] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    got_request: threading.Event = field(default_factory=threading.Event)
    body_bytes_sent: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/products"

    def file_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/files/{name}"

    def signature_ok(self, r: Received) -> bool:
        expected = "sha256=" + hmac.new(self.secret.encode(), r.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, r.signature)

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.removeprefix("/files/")
                if name not in server.files:
                    self.send_response(404)
                    self.end_headers()
                    return
                ctype, data = server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                r = Received(
                    self.headers.get("Idempotency-Key", ""),
                    self.headers.get("X-Intake-Signature", ""),
                    body,
                )
                with server.lock:
                    server.requests.append(r)
                    replay = r.key in server.applied
                    action = None if replay else (server.script.pop(0) if server.script else 200)
                server.got_request.set()
                if replay:
                    server.replays.append(r.key)
                    return self._answer(r, 200, {"replayed": True})
                if isinstance(action, tuple) and action[0] == "sleep":
                    # applied, but answered too late: the client's retry must be a replay
                    server.applied[r.key] = body
                    threading.Event().wait(action[1])
                    return self._answer(r, 200, {"late": True})
                if isinstance(action, tuple) and action[0] in ("flood", "drip"):
                    server.applied[r.key] = body
                    r.answered = 200
                    return self._stream(*action)
                if isinstance(action, tuple) and action[0] == "hang":
                    server.applied[r.key] = body
                    action[1].wait(30)
                    return self._answer(r, 200, {"ok": True})
                if isinstance(action, tuple):
                    return self._answer(r, action[0], {"error": "slow down"}, retry_after=action[1])
                if 200 <= action < 300:
                    server.applied[r.key] = body
                return self._answer(r, action, {"status": action})

            def _stream(self, how: str, amount: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                if how == "flood":
                    self.send_header("Content-Length", str(int(amount)))
                self.end_headers()
                block = b"x" * (1 << 20) if how == "flood" else b"x"
                ends = time.monotonic() + (amount if how == "drip" else 600)
                left = int(amount) if how == "flood" else 1 << 62
                try:
                    while left > 0 and time.monotonic() < ends:
                        self.wfile.write(block[:left])
                        self.wfile.flush()
                        with server.lock:
                            server.body_bytes_sent += min(len(block), left)
                        left -= len(block)
                        if how == "drip":
                            time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client read what it wanted and closed

            def _answer(
                self, r: Received, code: int, body: dict, retry_after: float | None = None
            ) -> None:
                raw = json.dumps(body).encode()
                r.answered = code
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    if retry_after is not None:
                        self.send_header("Retry-After", str(retry_after))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
