"""Objectives of a split plan from measured parts: end-to-end latency, pipelined throughput, bytes sent.

latency = sum of stage compute + per hop (encode + transport overhead + bytes / bandwidth + RTT / 2 + decode),
hops being the forward transfers and the return of the outputs to the device. A stream is limited by its
busiest resource: a core group (the stages pinned to the same cores add up their compute and codec time)
or a link (bytes / bandwidth; the delay overlaps with other work).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwlat.split._network import Link, framed_bytes


@dataclass(frozen=True)
class Hop:
    """One transfer: message bytes (payload), encode time on the sender, decode time on the receiver."""

    payload_bytes: int
    encode_ms: float
    decode_ms: float
    sender: int
    receiver: int


@dataclass(frozen=True)
class PlanCosts:
    """The measured parts of a plan: compute ms per active stage, the hops, each stage's core group."""

    compute_ms: tuple[float, ...]
    hops: tuple[Hop, ...]
    groups: tuple[object, ...]


def objectives(costs: PlanCosts, link: Link, hop_overhead_ms: float,
               idle_compute_ms: tuple[float, ...] | None = None) -> dict:
    """latency_ms, throughput_per_s, period_ms, bytes and the bottleneck of a plan on `link`.

    `idle_compute_ms`: stage times when each stage idles between inputs, as it does for one input at a
    time (latency); `costs.compute_ms` (back to back) set the stream's throughput.
    """
    latency = sum(idle_compute_ms if idle_compute_ms is not None else costs.compute_ms)
    busy = list(costs.compute_ms)
    wires = []
    for hop in costs.hops:
        wire = link.wire_ms(framed_bytes(hop.payload_bytes))
        latency += hop.encode_ms + hop_overhead_ms + wire + link.one_way_ms + hop.decode_ms
        busy[hop.sender] += hop.encode_ms
        busy[hop.receiver] += hop.decode_ms
        wires.append(wire)
    loads: dict[object, float] = {}
    for group, ms in zip(costs.groups, busy):
        loads[group] = loads.get(group, 0.0) + ms
    resources = {f"cores {group}": ms for group, ms in loads.items()}
    resources.update({f"link {number}": wire for number, wire in enumerate(wires)})
    bottleneck = max(resources, key=resources.get)
    period = resources[bottleneck]
    return {"latency_ms": latency, "throughput_per_s": 1e3 / period if period > 0 else float("inf"),
            "period_ms": period, "bytes": sum(framed_bytes(h.payload_bytes) for h in costs.hops),
            "bottleneck": bottleneck}
