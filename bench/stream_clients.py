"""The benchmark's clients, run as separate processes so the measuring side is not the bottleneck.

    python bench/stream_clients.py KIND PORT JOB_ID TOKEN N [SCHED]

KIND is ``sse`` (Intake's job stream), ``ws`` (Intake's WebSocket) or ``naive`` (the usual
consumer per connection), or ``feed``: the organization's activity feed with ``summary=1``, as
the dashboard opens it, where JOB_ID is instead the number of jobs whose terminal event ends
the watch. PORT may be several ports, comma-separated: the clients are spread over them
(several daphne processes), and for ``feed`` each client's line says which it used.
The process opens N connections, prints ``ready`` once every one has
its starting state, and when every client has the job's terminal event (or after the timeout)
prints one JSON line: per client, the (type, id, ts, arrived, read) of each event. No Django
here: a light process per share of the clients.

``arrived`` is when the event's bytes reached the client's socket: the kernel's receive
timestamp (``SO_TIMESTAMP``), taken inside daphne's own ``send()`` on loopback. ``read`` is when
this process's code read it. The two differ by the time the client waited for a core: the
clients stand in for machines elsewhere but share the server's two cores.

SCHED ``idle`` (the default) runs the process under Linux's ``SCHED_IDLE`` policy: it gets only
CPU that nothing else wants, as clients on other machines would take none of the server's. On
two shared cores the clients otherwise took the core from daphne in the middle of its
fan-outs (``perf sched``: most of the times daphne was preempted during a run, more CPU than
the worker's import took meanwhile). A client that reads late can only make the measured
arrival later, never earlier (``TimestampedConnection``), so this cannot flatter a figure;
``read`` then counts the wait for an idle core. ``batch`` (``SCHED_BATCH``: a fair share, but
no preempting a running process when its sockets wake it; the default until the sixth
session) and ``normal`` measure them as ordinary processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import struct
import sys
import time

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
    def __init__(self, terminals: int = 1, port: int = 0) -> None:
        self.events: list[tuple[str | None, str | None, str | None, float, float]] = []
        self.connected = asyncio.Event()
        self.done = asyncio.Event()
        self.connection: TimestampedConnection | None = None
        self.terminals_left = terminals  # a feed watches several jobs to their end
        self.port = port

    def got(self, data: dict, arrived: float, read: float | None = None) -> None:
        kind = data.get("type")
        if kind in ("snapshot", "status"):
            self.connected.set()  # subscribed: the stream has sent its starting state
        self.events.append((kind, data.get("id"), data.get("ts"), arrived, read or time.time()))
        if kind in TERMINAL:
            self.ended_one()

    def ended_one(self, n: int = 1) -> None:
        self.terminals_left -= n
        if self.terminals_left <= 0:
            self.done.set()


_TIMEVAL = struct.Struct("@ll")
# Linux's SO_TIMESTAMP (asm-generic/socket.h), which Python's socket module does not name:
# each read's ancillary data then carries the segment's arrival time as a struct timeval.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)
SO_RCVBUFFORCE = 33
CLIENT_RCVBUF = 8 << 20


# Bytes that only a terminal event's frame contains: while recording, a read that has one
# ends the client's wait without parsing anything.
_TERMINAL_MARKS = tuple(f'"type":"{t}"'.encode() for t in sorted(TERMINAL))


class TimestampedConnection:
    """A client socket read with ``recvmsg`` to get the kernel's receive timestamp of what it
    reads, feeding a protocol's ``data_received(data, arrived, read)``. Stands in for
    asyncio's transport, which does not hand out ancillary data: ``write`` (small writes only)
    and ``close``.

    The timestamp is never earlier than the truth, but can be later: segments that wait in
    the socket together are merged by the kernel, which keeps the newest one's time (reading
    them one at a time does not help). A client that reads late therefore dates an event by
    whatever arrived after it, and must read promptly to measure well.

    Once every client is connected, ``record()`` stops parsing on arrival: each read is kept
    with its timestamps and only looked at for a terminal event's bytes, and ``replay()``
    parses them after the run. The clients share the server's cores, so what they spend per
    event is CPU the server waits for; this leaves them little more than the ``recvmsg``.
    """

    def __init__(self, sock: socket.socket, protocol) -> None:
        self.sock = sock
        self.local_port = sock.getsockname()[1]  # names the connection in a packet capture
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.recorded: list[tuple[bytes, float, float]] | None = None
        self._tail = b""
        protocol.connection_made(self)
        self.loop.add_reader(sock.fileno(), self._readable)

    def record(self) -> None:
        self.recorded = []

    def replay(self) -> None:
        recorded, self.recorded = self.recorded or [], None
        for data, arrived, read in recorded:
            self.protocol.data_received(data, arrived, read)

    def _readable(self) -> None:
        got = self._read(1 << 18)
        if got is None:
            return
        if self.recorded is None:
            self.protocol.data_received(*got)
            return
        self.recorded.append(got)
        data = got[0]
        window, tail = self._tail + data, self._tail
        self._tail = data[-32:]
        ended = sum(window.count(mark) - tail.count(mark) for mark in _TERMINAL_MARKS)
        if ended:
            self.protocol.client.ended_one(ended)

    def _read(self, size: int) -> tuple[bytes, float, float] | None:
        """Up to ``size`` bytes with their arrival and read times; None when there is nothing
        to read now or the connection has ended."""
        try:
            data, ancillary, _, _ = self.sock.recvmsg(size, socket.CMSG_SPACE(_TIMEVAL.size))
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._lost(exc)
            return None
        if not data:
            self._lost(None)
            return None
        read = time.time()
        arrived = read
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP:
                seconds, micros = _TIMEVAL.unpack(value[: _TIMEVAL.size])
                arrived = seconds + micros / 1e6
        return data, arrived, read

    def write(self, data: bytes) -> None:
        if self.sock.send(data) != len(data):  # a request or a subscribe frame: a few hundred bytes
            raise ConnectionError("the socket took only part of a small write")

    def close(self) -> None:
        self._lost(None)

    def _lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.protocol.connection_lost(exc)


async def open_connection(protocol_factory, port: int):
    """Like ``loop.create_connection`` to 127.0.0.1:``port``, with receive timestamps."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    # Room for several seconds of events: a client process that waits for a core (SCHED_IDLE
    # beside busy ones) must not close its TCP window and hold daphne's sends back, as a
    # client on another machine, reading at once, would not. Set before connecting, so the
    # window scale is negotiated for it; FORCE passes net.core.rmem_max where permitted.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CLIENT_RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    protocol = protocol_factory()
    return TimestampedConnection(sock, protocol), protocol


class SSEProtocol(asyncio.Protocol):
    """Reads the event stream straight off the socket: ``data:`` lines, timestamped on arrival.

    Every event's ``data`` is one line and arrives whole inside one HTTP chunk, so chunk-size
    lines and the other SSE fields are simply skipped.
    """

    def __init__(self, client: Client, request: bytes) -> None:
        self.client = client
        self.request = request
        self.buffer = b""
        self.event = ""
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes, received: float, read: float | None = None) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            if line.startswith(b"event:"):
                self.event = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                payload = head(line[5:].lstrip())
                if "type" not in payload and self.event:
                    payload = {"type": self.event}  # a summary's data is the bare summary
                if "type" in payload:
                    self.client.got(payload, received, read)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def sse_client(port: int, job_id: str, token: str, c: Client, feed: bool = False) -> None:
    path = "/api/v1/realtime/events?summary=1" if feed else f"/api/v1/jobs/{job_id}/events"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    transport, proto = await connect_with_retry(
        lambda: open_connection(lambda: SSEProtocol(c, request), port)
    )
    c.connection = transport
    try:
        ended = [asyncio.ensure_future(c.done.wait()), asyncio.ensure_future(proto.closed.wait())]
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    finally:
        transport.close()


class WSProtocol(asyncio.Protocol):
    """A WebSocket client straight off the socket, like ``SSEProtocol``: the handshake, one
    masked subscribe frame, then the server's (unmasked) frames, timestamped on arrival.
    Lighter than a ``websockets`` connection and its task: the clients share the server's
    cores, and whatever they spend shows up as server latency."""

    def __init__(self, client: Client, request: bytes, subscribe: bytes | None) -> None:
        self.client = client
        self.request = request
        self.subscribe = subscribe
        self.buffer = b""
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes, received: float, read: float | None = None) -> None:
        buf = self.buffer + data
        if not self.opened.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            if b" 101 " not in buf[:end]:
                self.opened.set_exception(
                    ConnectionRefusedError(buf[:end].decode(errors="replace"))
                )
                self.transport.close()
                return
            self.opened.set_result(None)
            buf = buf[end + 4 :]
            if self.subscribe is not None:
                self.transport.write(_masked_text_frame(self.subscribe))  # type: ignore[attr-defined]
        frames, self.buffer = server_frames(buf)
        for opcode, payload in frames:
            if opcode == 1:
                message = head(payload)
                if "type" in message:
                    self.client.got(message, received, read)
            elif opcode == 8:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("closed during handshake"))
        self.closed.set()


def server_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole WebSocket frames a server sent (unmasked) at the start of ``buf``, as
    (opcode, payload), and what is left of ``buf`` after them."""
    frames, i = [], 0
    while len(buf) - i >= 2:
        length, header = buf[i + 1] & 0x7F, 2
        if length == 126:
            length, header = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
        elif length == 127:
            length, header = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
        if len(buf) - i < header + length:
            break
        frames.append((buf[i] & 0x0F, buf[i + header : i + header + length]))
        i += header + length
    return frames, buf[i:]


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    size = bytes((0x80 | n,)) if n < 126 else bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    return b"\x81" + size + mask + body


async def ws_client(port: int, job_id: str, token: str, c: Client, naive: bool) -> None:
    path = f"/ws/naive/{job_id}/" if naive else "/ws/v1/stream/"
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Token {token}\r\n\r\n"
    ).encode()
    subscribe = None if naive else json.dumps({"action": "subscribe", "topics": [f"job:{job_id}"]})

    async def connect():
        transport, proto = await open_connection(
            lambda: WSProtocol(c, request, subscribe.encode() if subscribe else None), port
        )
        try:
            await asyncio.wait_for(proto.opened, 60)
        except BaseException:
            transport.close()
            raise
        return transport, proto

    transport, proto = await connect_with_retry(connect)
    c.connection = transport
    try:
        if naive:
            c.connected.set()  # the consumer joins its group before it accepts
        ended = [asyncio.ensure_future(c.done.wait()), asyncio.ensure_future(proto.closed.wait())]
        await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
    finally:
        transport.close()


async def connect_with_retry(connect, attempts: int = 5):
    """A thousand simultaneous handshakes can overrun the listen backlog: try again, as a
    browser would, instead of counting a refused connection as a lost client."""
    for attempt in range(attempts):
        try:
            return await connect()
        except (OSError, TimeoutError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def main(kind: str, ports: list[int], job_id: str, token: str, n: int) -> None:
    terminals = int(job_id) if kind == "feed" else 1
    clients = [Client(terminals, ports[i % len(ports)]) for i in range(n)]
    if kind in ("sse", "feed"):
        tasks = [
            asyncio.create_task(sse_client(c.port, job_id, token, c, kind == "feed"))
            for c in clients
        ]
    else:
        tasks = [
            asyncio.create_task(ws_client(c.port, job_id, token, c, kind == "naive"))
            for c in clients
        ]
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
    for c in clients:
        c.connection.record()  # type: ignore[union-attr]
    print("ready", flush=True)
    cpu = time.process_time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in clients)), 180)
    cpu = time.process_time() - cpu
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        c.connection.replay()  # type: ignore[union-attr]
    print(f"# {n} {kind} clients: {cpu * 1000:.0f} ms of CPU following the job", file=sys.stderr)
    if kind == "feed":
        print(
            json.dumps([[c.port, c.connection.local_port, c.events] for c in clients]),  # type: ignore[union-attr]
            flush=True,
        )
    else:
        print(json.dumps([[c.connection.local_port, c.events] for c in clients]), flush=True)  # type: ignore[union-attr]


if __name__ == "__main__":
    kind, port, job_id, token, n = sys.argv[1:6]
    policy = {"batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}.get(
        sys.argv[6] if len(sys.argv) > 6 else "idle"
    )
    if policy is not None:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    asyncio.run(main(kind, [int(p) for p in port.split(",")], job_id, token, int(n)))
