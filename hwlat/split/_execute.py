"""Real runs of a split: the stages as separate processes exchanging tensors over loopback TCP."""

from __future__ import annotations

import numpy as np

from hwlat.devices._energy import EnergyMeter
from hwlat.split._network import Network
from hwlat.split._objectives import part_names
from hwlat.split._worker import StageConfig, StageWorker


def run_pipeline(workers: list[StageWorker], stages: list[tuple], network: Network, compression: str, inputs: list,
                 protocol: dict, count: int, window: int, spin_ms: float = 0.0,
                 energy_meter: EnergyMeter | None = None, energy_seconds: float = 1.0) -> dict:
    """Measure one plan: median end-to-end latency of single inputs, then the rate of a stream of `count`.

    `stages[s]` = (start cut, end cut) runs on `workers[s]`; the first is the device, which feeds the
    inputs and receives the outputs back from the last stage. Each stage paces its outgoing messages at its link
    of `network` and delays incoming ones by its incoming link's RTT/2 (`Network.link_for`; the last stage returns
    over the return link). Throughput skips the first `window` results.
    `spin_ms`: every stage busy-waits that long per input (calibration of the transport, see SplitSession).
    With `energy_meter`, single inputs also run back to back for `energy_seconds` under the meter:
    `measured_device_energy_mj` per input. `measured_<part>_ms`: the medians of the latency's parts over the single
    inputs (`measured_parts`).
    """
    networked = len(stages) > 1
    ports = [workers[s].call("listen")["port"] for s in range(len(stages))] if networked else []
    for s in range(1, len(stages)):
        last = s == len(stages) - 1
        receiver = 0 if last else s + 1
        workers[s].send({"op": "run", "config": StageConfig(
            start=stages[s][0], end=stages[s][1], is_device=False, downstream_port=ports[receiver],
            link=network.link_for(s, receiver), in_link=network.link_for(s - 1, s), compression=compression,
            returns_result=last, spin_ms=spin_ms)})
    device = StageConfig(start=stages[0][0], end=stages[0][1], is_device=True,
                         downstream_port=ports[1] if networked else None,
                         link=network.link_for(0, 1) if networked else None,
                         in_link=network.link_for(len(stages) - 1, 0) if networked else None,
                         compression=compression, returns_result=False, spin_ms=spin_ms)
    workers[0].call("run", config=device)
    try:
        latency = workers[0].call("latency", inputs=inputs, protocol=protocol)
        energy = {}
        if energy_meter is not None:
            runs, joules = energy_meter.measure(lambda: workers[0].call("repeat", inputs=inputs,
                                                                        seconds=energy_seconds)["runs"])
            energy = {"measured_device_energy_mj": joules * 1e3 / runs}
        done = np.asarray(workers[0].call("throughput", inputs=inputs, count=count, window=window)["done"])
    finally:
        workers[0].call("stop")
        ends = [workers[s].receive("pipeline end") for s in range(1, len(stages))]
    steady = done[min(window, len(done) - 2):]
    parts = measured_parts(latency["spans"], [end["spans"] for end in ends])
    return {"measured_latency_ms": latency["median_ms"], "measured_latency_ci_rel": latency["ci_rel"],
            "measured_throughput_per_s": (len(steady) - 1) / (steady[-1] - steady[0]),
            "served": [end["served"] for end in ends], **energy,
            **{f"measured_{name}_ms": ms for name, ms in parts.items()}}


def measured_parts(device_spans: list, stage_spans: list[list]) -> dict[str, float]:
    """Median ms of each part of one input's latency (`part_names`) from the spans of a real run's single inputs.

    Per input (a device "infer" span) the parts partition its time: the device from the input's start to the end
    of its segment, each hop from the sender's segment end to the receiver's segment start (codec, transport, wire,
    delay), each later stage's segment, and the return until the device has the outputs. Inputs of the stream
    phase (no "infer" span) are left out; empty when no input had exactly one segment run per stage.
    """
    rounds = [(start, end) for kind, start, end in device_spans if kind == "infer"]
    computes = [[(start, end) for kind, start, end in spans if kind == "compute"]
                for spans in [device_spans, *stage_spans]]
    rows = []
    for start, end in rounds:
        inside = [[span for span in spans if start <= span[0] and span[1] <= end] for spans in computes]
        if any(len(spans) != 1 for spans in inside):
            continue
        # the device from the input's start to its segment's end, then each later segment's start and end
        edges = [start, *([inside[0][0][1]] if len(inside) > 1 else []),
                 *(edge for (span,) in inside[1:] for edge in span), end]
        rows.append(list(np.diff(edges)))
    if not rows:
        return {}
    return dict(zip(part_names(len(computes)), (float(ms) for ms in np.median(np.asarray(rows) * 1e3, axis=0))))


def compared_parts(columns) -> list[str]:
    """The latency parts that `columns` hold both predicted (``<part>_ms``) and measured (``measured_<part>_ms``)."""
    names = set(columns)
    return [column.removeprefix("measured_").removesuffix("_ms") for column in columns
            if column.startswith("measured_") and column.endswith("_ms") and column != "measured_latency_ms"
            and column.removeprefix("measured_") in names]
