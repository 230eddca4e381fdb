"""What one delivery of a fan-out costs: a bare loopback ``send()`` against the streams' path.

    python -m config.devservers exec -- .venv/bin/python bench/fanout_cost.py
    (options: --clients 1000 --rounds 20 --bytes 1200)

A reader process holds ``--clients`` loopback TCP connections and reads them with epoll, as the
stream benchmark's clients do. This process holds the server ends and, each round, writes one
event of ``--bytes`` to every connection twice over: with bare ``socket.send`` calls, and
through ``ClientStream``'s listener, its direct write and ``daphne_compat._send_ready`` (what a
hub's pass does per connection, less daphne's own request checks). It prints the median and the
best round, in microseconds per delivery, of wall and CPU time. The gap between the two is all
that Python adds to a delivery; the rest is the kernel's, which on loopback includes the
receiver's TCP work and wake-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import select
import socket
import statistics
import sys
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from realtime import daphne_compat  # noqa: E402
from realtime.metrics import metrics  # noqa: E402
from realtime.streams import ClientStream, Outgoing  # noqa: E402


def reader(port: int, n: int) -> None:
    """The clients: connect, then read whatever arrives until the server closes."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    poll = select.epoll()
    by_fd = {}
    for s in socks:
        s.setblocking(False)
        poll.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s
    open_ = n
    while open_:
        for fd, _ in poll.poll():
            try:
                if not by_fd[fd].recv(1 << 16):
                    poll.unregister(fd)
                    open_ -= 1
            except BlockingIOError:
                pass
    os._exit(0)


class TcpConnection:
    """The attributes of a Twisted TCP connection that ``_send_ready`` reads."""

    TLS = False
    connected = True
    disconnecting = False
    _writeDisconnected = False

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.dataBuffer, self.offset, self._tempDataLen = b"", 0, 0


def timed(deliver, targets: list, payload) -> tuple[float, float]:
    """µs of wall and CPU time per target for ``deliver(target, payload)`` on every target."""
    n = len(targets)
    wall, cpu = time.perf_counter(), time.thread_time()
    for target in targets:
        deliver(target, payload)
    return (time.perf_counter() - wall) * 1e6 / n, (time.thread_time() - cpu) * 1e6 / n


async def measure(socks: list[socket.socket], rounds: int, size: int) -> dict[str, list]:
    streams = []
    for sock in socks:
        conn, stream = TcpConnection(sock), ClientStream()

        def direct(items: list[Outgoing], conn=conn, stream=stream) -> bool:
            if not daphne_compat._send_ready(conn, b"".join(i.sse_chunk() for i in items)):
                return False
            for item in items:
                metrics.delivered_one(item)
                if item.terminal:
                    stream.end()
            return True

        stream.direct = direct
        streams.append(stream)
    parked = [asyncio.ensure_future(s.next(3600)) for s in streams]
    await asyncio.sleep(0.05)  # every stream's sender waits in next(): the direct path
    body = '{"job": {' + ", ".join(f'"f{i}": {i}' for i in range(size // 10)) + "}}"
    results: dict[str, list] = {"bare send()": [], "stream's direct path": []}
    for r in range(rounds):
        chunk = Outgoing(topic="job:x", type="job.progress", id=f"{r}-0", data=body).sse_chunk()
        results["bare send()"].append(timed(socket.socket.send, socks, chunk))
        await asyncio.sleep(0.1)
        message = {
            "topic": "job:x",
            "id": f"{r + 1}-1",
            "event_type": "job.progress",
            "json": body,
            "sent_at": time.time(),
            "job_id": None,
        }
        results["stream's direct path"].append(timed(ClientStream._listener, streams, [message]))
        await asyncio.sleep(0.1)
    for p in parked:
        p.cancel()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--bytes", type=int, default=1200)
    args = ap.parse_args()
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# machine: {platform.platform()}, {os.cpu_count()} cores, {platform.python_version()}")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        reader(port, args.clients)
    socks = [listener.accept()[0] for _ in range(args.clients)]
    for s in socks:
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        results = asyncio.run(measure(socks, args.rounds, args.bytes))
    finally:
        for s in socks:
            s.close()
        os.waitpid(pid, 0)
    print("\n| per delivery, µs | wall median | wall best | CPU median | CPU best |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, rows in results.items():
        wall, cpu = [w for w, _ in rows], [c for _, c in rows]
        print(
            f"| {name} | {statistics.median(wall):.1f} | {min(wall):.1f} | "
            f"{statistics.median(cpu):.1f} | {min(cpu):.1f} |"
        )


if __name__ == "__main__":
    main()
