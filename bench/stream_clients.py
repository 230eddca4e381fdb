"""The benchmark's clients, run as separate processes so the measuring side is not the bottleneck.

    python bench/stream_clients.py KIND PORT JOB_ID TOKEN N

KIND is ``sse`` (Intake's job stream), ``ws`` (Intake's WebSocket) or ``naive`` (the usual
consumer per connection). The process opens N connections, prints ``ready`` once every one has
its starting state, and when every client has the job's terminal event (or after the timeout)
prints one JSON line: per client, the (type, id, ts, received-at) of each event. No Django here:
a light process per share of the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time

import websockets

TERMINAL = frozenset({"job.completed", "job.failed", "job.cancelled"})
# The envelope's own fields lead it (realtime.events.envelope): read those three off the front
# instead of parsing the whole job snapshot that follows, so the clients, which share this
# machine's two cores with the server they measure, take as little of them as they can.
_HEAD = (
    r'^\{(?:"id":"(?P<id>[^"]*)",)?"type":"(?P<type>[^"]*)",'
    r'"topic":"[^"]*","ts":"(?P<ts>[^"]*)"'
)
_HEAD_TEXT = re.compile(_HEAD)
_HEAD_BYTES = re.compile(_HEAD.encode())


def head(payload: str | bytes) -> dict:
    """The envelope's ``type``, ``id`` and ``ts`` (the whole JSON for anything else)."""
    found = (_HEAD_BYTES if isinstance(payload, bytes) else _HEAD_TEXT).match(payload)
    if found is None:
        return json.loads(payload)
    fields = {k: v for k, v in found.groupdict().items() if v is not None}
    if isinstance(payload, bytes):
        fields = {k: v.decode() for k, v in fields.items()}
    return fields


class Client:
    def __init__(self) -> None:
        self.events: list[tuple[str | None, str | None, str | None, float]] = []
        self.connected = asyncio.Event()
        self.done = asyncio.Event()

    def got(self, data: dict, received: float) -> None:
        kind = data.get("type")
        if kind == "snapshot":
            self.connected.set()  # subscribed: the stream has sent its starting state
        self.events.append((kind, data.get("id"), data.get("ts"), received))
        if kind in TERMINAL:
            self.done.set()


class SSEProtocol(asyncio.Protocol):
    """Reads the event stream straight off the socket: ``data:`` lines, timestamped on arrival.

    Every event's ``data`` is one line and arrives whole inside one HTTP chunk, so chunk-size
    lines and the other SSE fields are simply skipped.
    """

    def __init__(self, client: Client, request: bytes) -> None:
        self.client = client
        self.request = request
        self.buffer = b""
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        received = time.time()
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                payload = head(line[5:].lstrip())
                if "type" in payload:
                    self.client.got(payload, received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def sse_client(port: int, job_id: str, token: str, c: Client) -> None:
    request = (
        f"GET /api/v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    transport, proto = await connect_with_retry(
        lambda: loop.create_connection(lambda: SSEProtocol(c, request), "127.0.0.1", port)
    )
    try:
        ended = [asyncio.ensure_future(c.done.wait()), asyncio.ensure_future(proto.closed.wait())]
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    finally:
        transport.close()


async def ws_client(port: int, job_id: str, token: str, c: Client, naive: bool) -> None:
    url = (
        f"ws://127.0.0.1:{port}/ws/naive/{job_id}/"
        if naive
        else f"ws://127.0.0.1:{port}/ws/v1/stream/"
    )
    ws = await connect_with_retry(
        lambda: websockets.connect(
            url,
            additional_headers={"Authorization": f"Token {token}"},
            max_queue=None,
            open_timeout=60,
        )
    )
    try:
        if naive:
            c.connected.set()  # the consumer joins its group before it accepts
        else:
            await ws.send(json.dumps({"action": "subscribe", "topics": [f"job:{job_id}"]}))
        while not c.done.is_set():
            message = await ws.recv()
            c.got(head(message), time.time())
    finally:
        await ws.close()


async def connect_with_retry(connect, attempts: int = 5):
    """A thousand simultaneous handshakes can overrun the listen backlog: try again, as a
    browser would, instead of counting a refused connection as a lost client."""
    for attempt in range(attempts):
        try:
            return await connect()
        except (OSError, websockets.InvalidHandshake, TimeoutError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def main(kind: str, port: int, job_id: str, token: str, n: int) -> None:
    clients = [Client() for _ in range(n)]
    if kind == "sse":
        tasks = [asyncio.create_task(sse_client(port, job_id, token, c)) for c in clients]
    else:
        tasks = [
            asyncio.create_task(ws_client(port, job_id, token, c, kind == "naive")) for c in clients
        ]
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in clients)), 180)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps([c.events for c in clients]), flush=True)


if __name__ == "__main__":
    kind, port, job_id, token, n = sys.argv[1:6]
    asyncio.run(main(kind, int(port), job_id, token, int(n)))
