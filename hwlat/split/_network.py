"""The network between stages: bandwidth and delay, a rate-limited socket writer, length-prefixed messages.

The writer is a token bucket refilled at the link rate that starts each message empty and holds one chunk:
a chunk leaves when the bucket holds its bytes, so a message of b bytes takes b / rate, back-to-back
messages keep the rate, and sleeping late is made up on the next chunk (no tokens are lost).
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from dataclasses import dataclass

from hwlat._errors import HwlatError

_UNITS = {"bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}
_DURATIONS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_FRAME = struct.Struct("<Q")
#: the last part of a wait is spent yielding the core rather than sleeping: a core that went idle wakes up late
#: (measured on this VM: a 1 ms sleep of the writer ended 0.07-0.1 ms late, the link then seemed slower than set)
SPIN_MARGIN_S = 2e-4


def parse_bandwidth(text: str) -> float:
    """Bits per second from e.g. ``10Mbps``, ``1.5Gbps``, ``800kbps`` (decimal units); HwlatError otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]+)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise HwlatError(f"bandwidth {text!r} is not a number with a unit (bps, kbps, Mbps, Gbps), e.g. 100Mbps")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise HwlatError(f"bandwidth {text!r} must be positive")
    return value


def parse_bandwidths(text: str) -> list[float]:
    """A comma-separated list of bandwidths in bits per second."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise HwlatError("--bandwidth needs at least one value, e.g. 10Mbps,100Mbps,1Gbps")
    return [parse_bandwidth(part) for part in parts]


def parse_duration_ms(text: str) -> float:
    """Milliseconds from e.g. ``20ms``, ``500us``, ``0.1s`` (a bare number is milliseconds); must be >= 0."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*", text)
    if not match:
        raise HwlatError(f"duration {text!r} is not a number with a unit (us, ms, s), e.g. 20ms")
    return float(match.group(1)) * _DURATIONS[match.group(2) or "ms"]


def format_bandwidth(bps: float) -> str:
    """Short label of a bandwidth, e.g. 100Mbps."""
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g}{unit}"
    return f"{bps:g}bps"


@dataclass(frozen=True)
class Link:
    """A network link: rate in bits per second, round-trip time in ms (each message is delayed by half)."""

    bandwidth_bps: float
    rtt_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.bandwidth_bps > 0:
            raise HwlatError(f"bandwidth must be positive, got {self.bandwidth_bps} bit/s")
        if self.rtt_ms < 0:
            raise HwlatError(f"round-trip time must be >= 0, got {self.rtt_ms} ms")

    def wire_ms(self, nbytes: int) -> float:
        """Time the link is busy sending `nbytes` (framing included by the caller)."""
        return nbytes * 8 / self.bandwidth_bps * 1e3

    @property
    def one_way_ms(self) -> float:
        return self.rtt_ms / 2

    def chunk_bytes(self) -> int:
        """Bucket size of the writer: about 1 ms of the link's rate, between 1 KiB and 64 KiB."""
        return int(min(65536, max(1024, self.bandwidth_bps / 8 / 1000)))


def framed_bytes(payload_bytes: int) -> int:
    """Bytes on the wire for a message of `payload_bytes` (with its length prefix)."""
    return payload_bytes + _FRAME.size


class PacedWriter:
    """Writes whole messages to a socket at most at `link`'s rate (token bucket, see the module docstring)."""

    def __init__(self, sock: socket.socket, link: Link) -> None:
        self.sock = sock
        self.rate = link.bandwidth_bps / 8  # bytes per second
        self.chunk = link.chunk_bytes()

    def send(self, message: bytes) -> None:
        data = memoryview(_FRAME.pack(len(message)) + message)
        start = time.perf_counter()
        sent = 0
        while sent < len(data):
            size = min(self.chunk, len(data) - sent)
            wait_until(start + (sent + size) / self.rate)
            self.sock.sendall(data[sent:sent + size])
            sent += size


def wait_until(deadline: float) -> None:
    """Return at `deadline` (a `time.perf_counter` value): sleep until `SPIN_MARGIN_S` before, then yield the core.

    `os.sched_yield` releases the GIL and lets the stage's other threads run, but keeps the core awake.
    """
    rest = deadline - time.perf_counter() - SPIN_MARGIN_S
    if rest > 0:
        time.sleep(rest)
    while time.perf_counter() < deadline:
        os.sched_yield()


def receive_message(sock: socket.socket) -> bytearray | None:
    """The next length-prefixed message, or None when the peer closed the connection."""
    head = _receive_exactly(sock, _FRAME.size)
    if head is None:
        return None
    (length,) = _FRAME.unpack(head)
    body = _receive_exactly(sock, length)
    if body is None:
        raise HwlatError("connection closed in the middle of a message")
    return body


def _receive_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            if got:
                raise HwlatError("connection closed in the middle of a message")
            return None
        got += n
    return buffer


def set_timer_slack_ns(nanoseconds: int = 1000) -> None:
    """Shrink the kernel's timer slack for this thread and its future threads (precise short sleeps; Linux only)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, nanoseconds, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return


def connect(port: int) -> socket.socket:
    """A TCP connection to `port` on loopback with Nagle's algorithm off."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def listener() -> socket.socket:
    """A listening TCP socket on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock
