"""Objectives of a split plan from measured parts: end-to-end latency, pipelined throughput, bytes sent.

latency = sum of stage compute + per hop (encode + transport overhead + bytes / bandwidth + RTT / 2 + decode),
hops being the forward transfers and the return of the outputs to the device, each over its own link of the
`Network` (its bandwidth and RTT); a hop's transport overhead grows with how long its receiver idled before the
message came (`TransportCalibration`). A stream is limited by its busiest resource: a core group (the stages
pinned to the same cores add up their compute and codec time) or a link (bytes / bandwidth; the delay overlaps
with other work).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwlat.split._network import Network, framed_bytes


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


@dataclass(frozen=True)
class TransportCalibration:
    """Transport time per hop beyond the modelled parts (ms), measured on a link at increasing receiver idle times.

    A stage blocked on its socket for milliseconds wakes up slower than one that idled for microseconds (its
    core has gone to sleep; on this VM the hypervisor must wake it): measured here, 0.13 ms per hop after
    0.3 ms idle and 0.45 ms after 16 ms. Between measured idle times the overhead is interpolated linearly,
    outside them it is held at the nearest one.
    """

    idle_ms: tuple[float, ...]
    overhead_ms: tuple[float, ...]

    def at(self, idle_ms: float) -> float:
        """Overhead of a hop whose receiver idled `idle_ms` before the message arrived."""
        order = np.argsort(self.idle_ms)
        return float(np.interp(idle_ms, np.asarray(self.idle_ms)[order], np.asarray(self.overhead_ms)[order]))


def hop_wire_ms(hop: Hop, network: Network) -> float:
    """Time `hop`'s message (with its framing) keeps its link of `network` busy."""
    return network.link_for(hop.sender, hop.receiver).wire_ms(framed_bytes(hop.payload_bytes))


def stage_name(stage: int) -> str:
    """``device`` for stage 0, else ``s<stage>``, as plan labels name stages."""
    return "device" if stage == 0 else f"s{stage}"


def part_names(stages: int) -> list[str]:
    """The parts one input's latency is made of on `stages` active stages, in order: ``device``, then per
    stage its incoming hop and its compute (``device_to_s1``, ``s1``, ...), then the return (``s1_to_device``)."""
    names = ["device"]
    for stage in range(1, stages):
        names += [f"{stage_name(stage - 1)}_to_{stage_name(stage)}", stage_name(stage)]
    return names + ([f"{stage_name(stages - 1)}_to_device"] if stages > 1 else [])


def objectives(costs: PlanCosts, network: Network, hop_overheads_ms: Sequence[float],
               idle_compute_ms: tuple[float, ...] | None = None) -> dict:
    """latency_ms, throughput_per_s, period_ms, bytes, transport overhead and the bottleneck of a plan on `network`,
    and the latency's parts (`part_names`, each as ``<part>_ms``: a stage's compute, a hop's codec, transport
    overhead, wire time and delay).

    `hop_overheads_ms`: transport overhead of each hop (see `TransportCalibration`). `idle_compute_ms`: stage
    times when each stage idles between inputs, as it does for one input at a time (latency);
    `costs.compute_ms` (back to back) set the stream's throughput. The bottleneck names a core group or
    ``link N``, the plan's N-th hop (0: device -> s1; the last: the return to the device).
    """
    if len(hop_overheads_ms) != len(costs.hops):
        raise ValueError(f"{len(costs.hops)} hops need as many overheads, got {len(hop_overheads_ms)}")
    compute = idle_compute_ms if idle_compute_ms is not None else costs.compute_ms
    parts = [compute[0]]
    busy = list(costs.compute_ms)
    wires = []
    for hop, overhead in zip(costs.hops, hop_overheads_ms):
        wire, delay = hop_wire_ms(hop, network), network.link_for(hop.sender, hop.receiver).one_way_ms
        parts.append(hop.encode_ms + overhead + wire + delay + hop.decode_ms)
        if hop.receiver:
            parts.append(compute[hop.receiver])
        busy[hop.sender] += hop.encode_ms
        busy[hop.receiver] += hop.decode_ms
        wires.append(wire)
    latency = sum(parts)
    loads: dict[object, float] = {}
    for group, ms in zip(costs.groups, busy):
        loads[group] = loads.get(group, 0.0) + ms
    resources = {f"cores {group}": ms for group, ms in loads.items()}
    resources.update({f"link {number}": wire for number, wire in enumerate(wires)})
    bottleneck = max(resources, key=resources.get)
    period = resources[bottleneck]
    return {"latency_ms": latency, "throughput_per_s": 1e3 / period if period > 0 else float("inf"),
            "period_ms": period, "bytes": sum(framed_bytes(h.payload_bytes) for h in costs.hops),
            "transport_overhead_ms": float(sum(hop_overheads_ms)), "bottleneck": bottleneck,
            **{f"{name}_ms": ms for name, ms in zip(part_names(len(costs.compute_ms)), parts)}}
