"""When each event reached its client's socket, from a packet capture on the loopback device.

The benchmark's clients share the server's two cores. Under ``SCHED_IDLE`` they take no CPU
from it, but beside a busy process they may not run for a few hundred milliseconds, and the
kernel's per-read receive timestamp (``SO_TIMESTAMP``) cannot date what waited in the socket
meanwhile: TCP merges queued segments and keeps the newest one's time (``tcp_try_coalesce``),
so an event read late is dated by whatever arrived after it. Clients elsewhere would have read
it at once.

A packet socket sees every segment when it enters the loopback device's receive path, with
the time the kernel stamps on it there (the same clock and the same place as ``SO_TIMESTAMP``),
however late the capture itself is read: the kernel queues the segments with their stamps, in
a receive buffer large enough for a whole run, and they are read only after it, so the capture
takes no CPU from the server while it is measured.
So each server-to-client byte stream is rebuilt from the capture, parsed as the client parses
it, and each event is dated by the segment that completed it. Nothing here can make an event
earlier than the server sent it: a segment is stamped after daphne's ``send()`` put it there.

Needs ``CAP_NET_RAW`` (root): otherwise ``LoopbackCapture.open`` returns None and the benchmark
says it falls back to the clients' own timestamps.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import sys
import time
from collections.abc import Iterable

from stream_clients import SO_RCVBUFFORCE, head, server_frames

ETH_P_ALL = 0x0003
PACKET_HOST = 0  # the copy on the receive path (the send path shows each segment once more)
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def _filter(ports: list[int]) -> list[tuple[int, int, int, int]]:
    """Classic BPF: IPv4 TCP segments from one of ``ports`` on the receive path; all else is
    dropped in the kernel, so PostgreSQL's and Redis's loopback traffic costs nothing here."""
    ld_w_abs, ldh_abs, ldb_abs = 0x20, 0x28, 0x30
    ldxb_msh, ldh_ind = 0xB1, 0x48
    jeq, jset, ret = 0x15, 0x45, 0x06
    pkttype = (-0x1000 + 4) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_PKTTYPE
    n = len(ports)
    # the instructions after each test up to "drop" decide the jump offsets
    prog = [
        (ld_w_abs, 0, 0, pkttype),
        (jeq, 0, 8 + n, PACKET_HOST),
        (ldh_abs, 0, 0, 12),  # the ethertype in lo's (zeroed) Ethernet header
        (jeq, 0, 6 + n, 0x0800),
        (ldb_abs, 0, 0, 23),  # IP protocol
        (jeq, 0, 4 + n, 6),
        (ldh_abs, 0, 0, 20),  # fragment offset
        (jset, 2 + n, 0, 0x1FFF),
        (ldxb_msh, 0, 0, 14),  # X = IP header length
        (ldh_ind, 0, 0, 14),  # TCP source port
    ]
    for i, port in enumerate(ports):
        prog.append((jeq, n - i, 0, port))
    prog += [(ret, 0, 0, 0), (ret, 0, 0, 0x40000)]
    return prog


class LoopbackCapture:
    """Every segment the given server ports send on loopback, with its kernel timestamp."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.segments: list[tuple[float, bytes]] = []

    @classmethod
    def open(cls, ports: Iterable[int]) -> LoopbackCapture | None:
        try:
            # protocol 0: nothing is queued until the filter is on and the socket is bound
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except (AttributeError, OSError) as exc:
            print(f"# no loopback capture ({exc}): arrival from the clients' SO_TIMESTAMP")
            return None
        try:
            prog = _filter(list(ports))
            insns = (_SockFilter * len(prog))(*(_SockFilter(*i) for i in prog))
            fprog = bytes(_SockFprog(len(prog), insns))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:  # room for a whole run's segments even if this process is not scheduled
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 30)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 30)
                print(
                    "# capture buffer capped by net.core.rmem_max (no CAP_NET_ADMIN): a long run "
                    "may overflow it; its drops are reported and events after a gap keep the "
                    "clients' own timestamps"
                )
            sock.bind(("lo", ETH_P_ALL))  # Python puts the protocol in network order itself
            sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading them resets the counts
        except OSError as exc:
            sock.close()
            print(f"# no loopback capture ({exc}): arrival from the clients' SO_TIMESTAMP")
            return None
        return cls(sock)

    def stop(self) -> int:
        """Read what the kernel queued during the run (nothing is read before: the capture
        takes no CPU from the server while it is measured); return the segments dropped."""
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        self.sock.setblocking(False)
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(1 << 18, space)
            except BlockingIOError:
                break
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                    self.segments.append((sec + nsec / 1e9, data))
        _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.sock.close()
        return drops

    def arrivals(self) -> dict[tuple[int, int], dict[str, tuple[str, float]]]:
        """Per connection (server port, client port), each event id's type and the time its
        last byte arrived. Both ports: with several daphne processes two connections may share
        a client port.

        Segments are put in sequence order per connection first: the two cores' receive
        queues can hand the capture two segments of one connection in the other order."""
        per_port: dict[tuple[int, int], tuple[int, list[tuple[int, float, bytes]]]] = {}
        for stamp, frame in self.segments:
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0] or len(ip)  # 0: a GSO segment over 64 kB
            tcp = ip[ihl:total]
            src, dst, seq = struct.unpack("!HHI", tcp[:8])
            payload = tcp[(tcp[12] >> 4) * 4 :]
            if tcp[13] & 0x02:  # SYN: a connection starts (on ports that may be reused)
                per_port[src, dst] = ((seq + 1) & 0xFFFFFFFF, [])
            elif payload and (src, dst) in per_port:
                first, segments = per_port[src, dst]
                segments.append(((seq - first) & 0xFFFFFFFF, stamp, payload))
        out = {}
        for ports, (_, segments) in per_port.items():
            stream = _Stream()
            for offset, stamp, payload in sorted(segments, key=lambda s: s[0]):
                stream.segment(offset, payload, stamp)
            out[ports] = stream.events
        return out


class _Stream:
    """One server-to-client byte stream, parsed as SSE or WebSocket frames as it grows."""

    def __init__(self) -> None:
        self.next_seq = 0  # offsets from the first byte after the SYN
        self.buffer = b""
        self.mode: str | None = None
        self.events: dict[str, tuple[str, float]] = {}
        self.broken = False
        self.stamp = 0.0

    def segment(self, seq: int, payload: bytes, stamp: float) -> None:
        if self.broken:
            return
        ahead = (seq - self.next_seq) & 0xFFFFFFFF
        if ahead > 0x7FFFFFFF:  # starts before what we have: a retransmission
            overlap = (self.next_seq - seq) & 0xFFFFFFFF
            if overlap >= len(payload):
                return
            payload = payload[overlap:]
        elif ahead:  # a gap: the capture missed a segment; date nothing after it
            self.broken = True
            return
        self.next_seq = (self.next_seq + len(payload)) & 0xFFFFFFFF
        self.buffer += payload
        # the bytes so far are complete once the latest of their segments is in
        self.stamp = max(self.stamp, stamp)
        self._parse(self.stamp)

    def _parse(self, stamp: float) -> None:
        buf = self.buffer
        if self.mode is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.mode = "ws" if b" 101 " in buf[: buf.find(b"\r\n")] else "sse"
            buf = buf[end + 4 :]
        if self.mode == "sse":
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    self._got(head(line[5:].lstrip()), stamp)
        else:
            frames, buf = server_frames(buf)
            for opcode, payload in frames:
                if opcode == 1:
                    self._got(head(payload), stamp)
        self.buffer = buf

    def _got(self, message: dict, stamp: float) -> None:
        event_id, kind = message.get("id"), message.get("type")
        if event_id and kind and event_id not in self.events:
            self.events[event_id] = (kind, stamp)


def redate(reported: list, capture: LoopbackCapture | None) -> tuple[list, dict]:
    """``reported``: per client, its connection's (server port, local port) and its (type, id,
    ts, arrived, read) events. Returns the clients' events, each dated by when its last byte
    reached the client's socket according to ``capture`` where there is one, else by the
    client's own ``SO_TIMESTAMP``; and how the two compare."""
    if capture is None:
        return [events for _, events in reported], {"arrival": "SO_TIMESTAMP"}
    drops = capture.stop()
    captured = capture.arrivals()
    clients, dated, missing, later, capture_later = [], 0, 0, [], 0
    for ports, events in reported:
        seen = captured.get(tuple(ports), {})
        out = []
        for t, i, ts, arrived, read in events:
            hit = seen.get(i) if i else None
            if hit is not None:
                dated += 1
                if hit[1] > arrived + 0.001:  # the capture may never date later than the client
                    capture_later += 1
                later.append(arrived - hit[1])
                arrived = hit[1]
            elif i and t and t.startswith("job."):
                missing += 1
            out.append((t, i, ts, arrived, read))
        clients.append(out)
    later.sort()
    return clients, {
        "arrival": "capture",
        "capture_dated": dated,
        "capture_missing": missing,
        "capture_drops": drops,
        # the clients' own timestamp was later than the capture's by (ms): what a client that
        # read late made of it
        "so_timestamp_later_p50_ms": (later[len(later) // 2] if later else float("nan")) * 1000,
        "so_timestamp_later_max_ms": (later[-1] if later else float("nan")) * 1000,
        "capture_later_than_client": capture_later,
    }


if __name__ == "__main__":  # a smoke check: capture what a port sends for a few seconds
    capture = LoopbackCapture.open([int(p) for p in sys.argv[1].split(",")])
    if capture is not None:
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 5)
        drops = capture.stop()
        print(f"{len(capture.segments)} segments, {drops} dropped")
        for port, got in capture.arrivals().items():
            print(port, len(got), "events")
