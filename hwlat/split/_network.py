"""The network between stages: links (bandwidth and delay), a rate-limited socket writer, length-prefixed messages.

A split's stages form a chain device -> s1 -> ... -> last stage -> device (`Network`): one `Link` per forward
transfer and one for the return of the outputs to the device, each with its own rate.

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
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

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


def _link_values(text: str, what: str, value: str) -> list[str]:
    """The '/'-separated values of one link each, e.g. ``10Mbps/1Gbps``; HwlatError on an empty one."""
    parts = text.split("/")
    if len(parts) > 1 and any(not part.strip() for part in parts):
        raise HwlatError(f"{what} {text!r} has an empty {value} between '/'")
    return parts


def parse_network(text: str, stages: int, rtt_ms: float | Sequence[float] = 0.0) -> Network:
    """The links of one sweep point, e.g. ``100Mbps`` (every link) or ``10Mbps/1Gbps`` (one rate per link,
    see `Network.of`), with round-trip time `rtt_ms` (one for every link, or one per link like the rates)."""
    return Network.of([parse_bandwidth(part) for part in _link_values(text, "bandwidth", "link rate")], stages, rtt_ms)


def parse_networks(text: str, stages: int, rtt_ms: float | Sequence[float] = 0.0) -> list[Network]:
    """Comma-separated sweep points of `parse_network`, e.g. ``10Mbps/1Gbps,100Mbps/1Gbps``."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise HwlatError("--bandwidth needs at least one value, e.g. 10Mbps,100Mbps,1Gbps")
    return [parse_network(part, stages, rtt_ms) for part in parts]


def parse_rtts(text: str) -> float | list[float]:
    """Round-trip times in ms: ``20ms`` (every link) or ``20ms/1ms`` (one per link, counted like the link rates)."""
    values = [parse_duration_ms(part) for part in _link_values(text, "round-trip time", "value")]
    return values[0] if len(values) == 1 else values


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


@dataclass(frozen=True)
class Network:
    """The links of a split's chain, one per stage: device -> s1, s1 -> s2, ..., then the return from the last
    stage to the device (`links[-1]`); `label` names the network in tables and report names, e.g. 10Mbps/1Gbps.

    Links are full duplex and separate: each one is its own resource for a stream's throughput.
    """

    links: tuple[Link, ...]
    label: str

    def __post_init__(self) -> None:
        if len(self.links) < 2 or not all(isinstance(link, Link) for link in self.links):
            raise HwlatError(f"network {self.label}: a chain needs at least 2 Links (device -> s1 and the return), "
                             f"got {self.links!r}")

    @property
    def stages(self) -> int:
        return len(self.links)

    @classmethod
    def uniform(cls, link: Link, stages: int) -> Network:
        """Every link of a `stages`-stage chain is `link` (labelled by its rate, e.g. 100Mbps)."""
        return cls((link,) * stages, format_bandwidth(link.bandwidth_bps))

    @classmethod
    def of(cls, rates_bps: Sequence[float], stages: int, rtt_ms: float | Sequence[float] = 0.0) -> Network:
        """Links from rates (bit/s) for `stages` stages: 1 rate for every link; `stages` - 1 for the forward links
        in order, the return to the device then going over the device's link (the first rate); or `stages`: the
        forward links, then the return link. `rtt_ms` (ms): one for every link, or one per link counted the same
        way; labelled by the rates only, e.g. 10Mbps/1Gbps."""
        if stages < 2:
            raise HwlatError(f"a split needs at least 2 stages, got {stages}")
        rates = list(rates_bps)
        label = "/".join(format_bandwidth(rate) for rate in rates)
        rtts = [rtt_ms] if isinstance(rtt_ms, Real) else list(rtt_ms)
        rtt_label = "/".join(f"{rtt:g}ms" for rtt in rtts)
        return cls(tuple(Link(rate, rtt) for rate, rtt in zip(
            _per_link(rates, stages, f"bandwidth {label}", "link rates", "rate"),
            _per_link(rtts, stages, f"round-trip time {rtt_label}", "round-trip times", "one"))), label)

    def link_for(self, sender: int, receiver: int) -> Link:
        """The link a message from stage `sender` to stage `receiver` crosses: forward to the next stage, or the
        return link into the device (from whichever stage is the last one a plan uses)."""
        if receiver == sender + 1 < self.stages:
            return self.links[sender]
        if receiver == 0 < sender < self.stages:
            return self.links[-1]
        raise HwlatError(f"network {self.label}: no link from stage {sender} to stage {receiver} "
                         f"in a chain of {self.stages} stages")


def _per_link(values: list, stages: int, what: str, kind: str, first: str) -> list:
    """`values` (`kind`, e.g. link rates) for each of a `stages`-stage chain's links: 1 for every link,
    `stages` - 1 forward ones (the return takes the first), or `stages`; HwlatError naming the counts otherwise."""
    if len(values) == 1:
        return values * stages
    if len(values) == stages - 1:
        return [*values, values[0]]
    if len(values) == stages:
        return values
    chain = " -> ".join(["device", *(f"s{k}" for k in range(1, stages))])
    counts = [f"{stages} ({chain}, then the return)"]
    if stages > 2:
        counts.insert(0, f"{stages - 1} ({chain}; the return to the device at the first {first})")
    raise HwlatError(f"{what}: {len(values)} {kind} for {stages} stages; give "
                     f"{', '.join(['1 (every link)', *counts[:-1]])} or {counts[-1]}")


def as_network(value: Network | Link | str | float | Sequence[float], stages: int,
               rtt_ms: float | Sequence[float] = 0.0) -> Network:
    """`value` as the links of a `stages`-stage chain: a Network (checked), a Link (every link), a rate in bit/s
    (every link), rates per link (`Network.of`) or their text (`parse_network`); `rtt_ms` (one, or one per link)
    applies to rates."""
    if isinstance(value, Network):
        if value.stages != stages:
            raise HwlatError(f"network {value.label} has {value.stages} links, a {stages}-stage split needs {stages}")
        return value
    if isinstance(value, Link):
        return Network.uniform(value, stages)
    if isinstance(value, str):
        return parse_network(value, stages, rtt_ms)
    return Network.of([value] if isinstance(value, Real) else value, stages, rtt_ms)


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
