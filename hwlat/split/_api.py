"""Split a model across a device and servers: find cuts, measure parts, rank plans per network, verify."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from hwlat._errors import HwlatError
from hwlat.devices._energy import EnergyMeter
from hwlat.profilers._protocol import MeasurementProtocol
from hwlat.split._cuts import CutPoint, check_compression, find_cuts, locate_cuts, static_shapes
from hwlat.split._energy import DevicePower, device_energy_mj, measure_device_power
from hwlat.split._execute import run_pipeline
from hwlat.split._models import example_inputs, resolve_model
from hwlat.split._network import Link, Network, as_network, format_bandwidth
from hwlat.split._objectives import Hop, PlanCosts, TransportCalibration, objectives
from hwlat.split._segments import tensor_values
from hwlat.split._sides import Side
from hwlat.split._worker import StageWorker

#: timing of segments and codecs in the stage processes (the profilers' protocol, shorter budget)
PART_PROTOCOL = MeasurementProtocol(warmup_runs=5, warmup_seconds=0.05, min_repeats=20, time_budget_s=0.5)
#: timing of end-to-end latency in real runs
RUN_PROTOCOL = MeasurementProtocol(warmup_runs=3, warmup_seconds=0.0, min_repeats=10, time_budget_s=1.5)
#: busy time per stage (ms) of the transport calibration's round trips: receivers idle from ~0.3 ms to ~65 ms
CALIBRATION_SPINS_MS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
#: a chosen split is a close call when the runner-up is predicted less than this much slower: about the 90th
#: percentile of a single plan's |predicted / measured latency - 1| in real runs here (10.8 % over 891 runs,
#: BENCHMARKS.md), so their order may be the other way round; only real runs of both can tell (`race`)
CLOSE_CALL = 0.10
#: how a segment's time is found (`SplitSession.segment_ms`): timed as one, or summed from the blocks between cuts
SEGMENT_TIMES = ("segments", "blocks")
#: a race (`SplitSession.race`) names the faster plan when its sign test's p-value is below this
RACE_ALPHA = 0.05
#: what a race adds to the chosen plan's row (and to the report's settings)
_RACE_KEYS = ("race_rival", "race_rounds", "race_first_wins", "race_p_value", "race_median_ratio", "race_faster")


@dataclass(frozen=True)
class Plan:
    """Positions in the cut list where stage s ends (strictly increasing, one per stage boundary)."""

    positions: tuple[int, ...]


class SplitSession:
    """One model, one process per stage (first = device), and caches of every measured part.

    Use as a context manager: the stage processes are stopped on exit. `cuts` (node or tensor names, as
    `find_cuts` names them) restricts the plans to those cut points; they are checked before any process starts.
    `device_power` (or "measure": calibrated with `energy_meter` once the device side is up) adds the device's
    energy per input to every evaluation; `energy_meter` adds its measurement to every real run. With
    `batch_size` N each input is a batch of N samples (the model's symbolic dimensions set to N): latency, bytes
    and energy are per batch, throughput in batches per second. `segment_times` ("segments" or "blocks", see
    `segment_ms`) says whether each segment a plan uses is timed, or summed from blocks timed once.
    """

    def __init__(self, model: str, sides: Sequence[Side], compression: str = "none", max_tensors: int = 1,
                 protocol: MeasurementProtocol = PART_PROTOCOL, run_protocol: MeasurementProtocol = RUN_PROTOCOL,
                 cuts: Sequence[str] | None = None, device_power: DevicePower | str | None = None,
                 energy_meter: EnergyMeter | None = None, batch_size: int = 1,
                 segment_times: str = "segments") -> None:
        if segment_times not in SEGMENT_TIMES:
            raise HwlatError(f"segment times must be one of {', '.join(SEGMENT_TIMES)}, got {segment_times!r}")
        if len(sides) < 2:
            raise HwlatError(f"a split needs at least 2 stages, got {len(sides)}")
        if isinstance(device_power, str) and (device_power != "measure" or energy_meter is None):
            raise HwlatError(f"device power {device_power!r}: give a DevicePower, or 'measure' with an energy meter")
        check_compression(compression)
        self.model = resolve_model(model)
        self.graph = static_shapes(self.model.load(), batch_size)
        self.batch_size = batch_size
        self.segment_times = segment_times
        self.cuts: list[CutPoint] = find_cuts(self.graph, max_tensors)
        self.max_tensors = max_tensors
        #: cut positions plans may use (all, or the named ones in graph order)
        self.candidates = (sorted(set(locate_cuts(self.graph, self.cuts, list(cuts), max_tensors)))
                           if cuts is not None else list(range(len(self.cuts))))
        if len(self.candidates) < len(sides) - 1:
            raise HwlatError(f"{len(sides)} stages need at least {len(sides) - 1} distinct cuts, "
                             f"got {len(self.candidates)}")
        feeds = example_inputs(self.graph)
        names = list(dict.fromkeys(name for cut in self.cuts for name in cut.tensors))
        self.values = tensor_values(self.graph, feeds, names)
        self.sides = list(sides)
        self.compression = compression
        self.protocol = protocol
        self.run_protocol = run_protocol
        self._parts: dict[tuple, object] = {}
        self._transport: dict[Link, TransportCalibration] = {}
        self.energy_meter = energy_meter
        self.workers: list[StageWorker] = []
        try:
            for side in self.sides:
                self.workers.append(StageWorker(side))
            for worker in self.workers:
                worker.call("load", path=str(self.model.path), batch_size=batch_size)
            self.device_power = self._measure_power() if device_power == "measure" else device_power
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SplitSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop every stage process."""
        for worker in self.workers:
            worker.close()
        self.workers = []

    @property
    def stages(self) -> int:
        return len(self.sides)

    def arrays(self, cut: CutPoint) -> list:
        return [self.values[name] for name in cut.tensors]

    def _measure_power(self) -> DevicePower:
        """The device's idle power and its power while running the whole model (`measure_device_power`)."""
        first, last = self.cuts[0], self.cuts[-1]

        def run_device(seconds: float) -> None:
            self.workers[0].call("repeat_segment", start=first, end=last, arrays=self.arrays(first), seconds=seconds)

        run_device(0.0)  # builds the session outside the measurement
        return measure_device_power(self.energy_meter, run_device)

    def network(self, links: Network | Link) -> Network:
        """`links` as a Network of this session's stages (a Link: every link at its rate and RTT)."""
        return as_network(links, self.stages)

    def _worker_for(self, stage: int) -> StageWorker:
        """The first stage process with the same side settings (parts are timed once per side)."""
        return self.workers[self.sides.index(self.sides[stage])]

    def segment_ms(self, stage: int, start: int, end: int, idle_ms: float = 0.0) -> float:
        """Time of the segment between cut positions `start` and `end` on `stage`'s side (`segment_times`).

        "segments": the segment's median, timed as one; "blocks": the sum of the medians of the blocks between
        consecutive candidate cuts inside it, each timed once (n timings per side instead of one per segment), the
        first one after the idle wait. With `idle_ms` each run follows that long an idle wait.
        """
        if self.segment_times == "segments":
            return self._timed_segment(stage, start, end, idle_ms)
        edges = [start, *(p for p in sorted({0, len(self.cuts) - 1, *self.candidates}) if start < p < end), end]
        blocks = list(itertools.pairwise(edges))
        return (self._timed_segment(stage, *blocks[0], idle_ms)
                + sum(self._timed_segment(stage, a, b) for a, b in blocks[1:]))

    def _timed_segment(self, stage: int, start: int, end: int, idle_ms: float = 0.0) -> float:
        """Median time of the segment between cut positions `start` and `end` on `stage`'s side, timed as one.

        With `idle_ms` each run follows that long an idle wait (rounded to 2 significant digits); a remote device's
        segments are timed back to back on it (its `time_evaluator` cannot idle between runs).
        """
        idle_ms = float(f"{idle_ms:.2g}") if idle_ms > 0 and not self.sides[stage].remote else 0.0
        key = ("segment", self.sides[stage], start, end, idle_ms)
        if key not in self._parts:
            protocol = self.protocol if not idle_ms else replace(self.protocol, warmup_runs=2, warmup_seconds=0.0,
                                                                   min_repeats=10)
            self._parts[key] = self._worker_for(stage).call(
                "time", start=self.cuts[start], end=self.cuts[end], arrays=self.arrays(self.cuts[start]),
                protocol=protocol.as_dict(), idle_ms=idle_ms)["median_ms"]
        return self._parts[key]

    def codec(self, stage: int, position: int, compression: str) -> dict:
        """Message bytes, encode and decode ms of cut `position`'s tensors on `stage`'s side."""
        key = ("codec", self.sides[stage], position, compression)
        if key not in self._parts:
            self._parts[key] = self._worker_for(stage).call(
                "codec", arrays=self.arrays(self.cuts[position]), compression=compression,
                protocol=self.protocol.as_dict() | {"time_budget_s": self.protocol.time_budget_s / 2})
        return self._parts[key]

    def plan_after(self, *nodes: str) -> Plan:
        """The plan cutting after each named node or tensor (`stages` - 1 names); HwlatError if one is no valid cut."""
        return self.check(Plan(tuple(locate_cuts(self.graph, self.cuts, list(nodes), self.max_tensors))))

    def check(self, plan: Plan) -> Plan:
        """`plan` if it has one position per stage boundary, strictly increasing, in range; else HwlatError."""
        positions = plan.positions
        if len(positions) != self.stages - 1:
            raise HwlatError(f"a {self.stages}-stage plan needs {self.stages - 1} cuts, got {len(positions)}")
        if any(not 0 <= p < len(self.cuts) for p in positions) or any(b <= a for a, b in itertools.pairwise(positions)):
            raise HwlatError(f"cut positions {list(positions)} must increase strictly within 0..{len(self.cuts) - 1}")
        return plan

    def stage_bounds(self, plan: Plan) -> list[tuple[int, int]]:
        """(start, end) cut positions per active stage; trailing empty stages are dropped."""
        bounds = [0, *self.check(plan).positions, len(self.cuts) - 1]
        stages = list(itertools.pairwise(bounds))
        while len(stages) > 1 and stages[-1][0] == stages[-1][1]:
            stages.pop()
        return stages

    def costs(self, plan: Plan) -> PlanCosts:
        """The measured parts of `plan` (measured now if not yet cached)."""
        stages = self.stage_bounds(plan)
        compute = tuple(self.segment_ms(s, a, b) for s, (a, b) in enumerate(stages))
        hops = []
        if len(stages) > 1:
            for s in range(len(stages)):
                last = s == len(stages) - 1
                receiver = 0 if last else s + 1
                position, compression = stages[s][1], "none" if last else self.compression
                sent, got = self.codec(s, position, compression), self.codec(receiver, position, compression)
                hops.append(Hop(sent["bytes"], sent["encode_ms"], got["decode_ms"], s, receiver))
        groups = tuple(self.sides[s].cpus or f"stage {s}" for s in range(len(stages)))
        return PlanCosts(compute, tuple(hops), groups)

    def transport(self, link: Link) -> TransportCalibration:
        """Transport overhead per hop beyond the modelled parts, by receiver idle time, measured once per link.

        Real round trips on the first two stages: the device sends the model's outputs to the first server,
        which returns them unchanged (two hops), each stage keeping its core busy for a spin of
        `CALIBRATION_SPINS_MS` per message as a segment would, so each receiver idles the rest of the round
        trip. Overhead per hop = (measured - 2 spins - the modelled hops) / 2.
        """
        if link not in self._transport:
            last, both_ways = len(self.cuts) - 1, Network.uniform(link, 2)
            plan_costs = PlanCosts((0.0, 0.0), tuple(
                Hop(self.codec(a, last, "none")["bytes"], self.codec(a, last, "none")["encode_ms"],
                    self.codec(b, last, "none")["decode_ms"], a, b) for a, b in ((0, 1), (1, 0))), ("d", "s"))
            modelled = objectives(plan_costs, both_ways, (0.0, 0.0))["latency_ms"]
            idle, overhead = [], []
            for spin in CALIBRATION_SPINS_MS:
                measured = run_pipeline(self.workers[:2], [(self.cuts[last], self.cuts[last])] * 2, both_ways, "none",
                                        self.arrays(self.cuts[last]), self.run_protocol.as_dict(), 4, 2, spin)
                round_trip = measured["measured_latency_ms"]
                idle.append(round_trip - spin)
                overhead.append(max(0.0, (round_trip - 2 * spin - modelled) / 2))
            self._transport[link] = TransportCalibration(tuple(idle), tuple(overhead))
        return self._transport[link]

    def evaluate(self, plan: Plan, network: Network | Link) -> dict:
        """Predicted objectives of `plan` on `network` (or a Link for every link), one input at a time and streamed.

        While one input goes round, each stage idles for the rest of the (back-to-back) latency: its segment
        is timed after such an idle wait, and each hop's transport overhead is its link's calibration at its
        receiver's idle time.
        """
        network = self.network(network)
        costs = self.costs(plan)
        calibrations = [self.transport(network.link_for(hop.sender, hop.receiver)) for hop in costs.hops]
        result = objectives(costs, network, [calibration.at(0.0) for calibration in calibrations])
        device_ms = costs.compute_ms[0]
        if len(costs.compute_ms) > 1:
            idle = [result["latency_ms"] - ms for ms in costs.compute_ms]
            idle_compute = tuple(self.segment_ms(s, a, b, idle[s])
                                 for s, (a, b) in enumerate(self.stage_bounds(plan)))
            result = objectives(costs, network, [calibration.at(idle[hop.receiver])
                                                 for calibration, hop in zip(calibrations, costs.hops)], idle_compute)
            device_ms = idle_compute[0]
        if self.device_power is not None:
            result["device_energy_mj"] = device_energy_mj(self.device_power, costs, network, device_ms,
                                                          result["latency_ms"])
        return result

    def label(self, plan: Plan) -> str:
        """E.g. ``device[0:12] | s1[12:40]`` in compute-node indices."""
        names = ["device", *(f"s{s}" for s in range(1, self.stages))]
        return " | ".join(f"{names[s]}[{self.cuts[a].index}:{self.cuts[b].index}]"
                          for s, (a, b) in enumerate(self.stage_bounds(plan)))

    def all_plans(self) -> list[Plan]:
        """Every plan over the candidate cuts."""
        return [Plan(p) for p in itertools.combinations(self.candidates, self.stages - 1)]

    def verify(self, plan: Plan, network: Network | Link, prediction: dict, seconds: float = 1.0,
               energy: bool = True) -> dict:
        """Run `plan` for real on `network` (or a Link for every link): median latency (`run_protocol`) and its
        parts (``measured_<part>_ms``, as `evaluate` predicts them as ``<part>_ms``), then a stream of about
        `seconds`; with an energy meter (and `energy`), the device energy per input over single inputs for the run
        budget."""
        stages = self.stage_bounds(plan)
        remote = [self.sides[s].spec for s, (a, b) in enumerate(stages) if self.sides[s].remote and a != b]
        if remote:
            raise HwlatError(f"{self.label(plan)} computes on remote devices ({', '.join(remote)}), which are "
                             f"predicted, not run for real")
        window = max(2, math.ceil(prediction["latency_ms"] / prediction["period_ms"]) + 1)
        count = window + max(10, math.ceil(seconds * 1e3 / prediction["period_ms"]))
        measured = run_pipeline(self.workers[:len(stages)], [(self.cuts[a], self.cuts[b]) for a, b in stages],
                                self.network(network), self.compression, self.arrays(self.cuts[0]),
                                self.run_protocol.as_dict(), count, window,
                                energy_meter=self.energy_meter if energy else None,
                                energy_seconds=self.run_protocol.time_budget_s)
        return {key: value for key, value in measured.items() if key.startswith("measured_")}

    def race(self, first: Plan, second: Plan, network: Network | Link, rounds: int) -> dict:
        """Run two plans for real on `network` `rounds` times each, alternately (first, second, then second,
        first, ...), so that the machine's drift hits both alike: how often `first` was faster, a two-sided sign
        test of that, the median of the paired latency ratios first / second, and which is faster ("first",
        "second", or "neither" when p >= `RACE_ALPHA`). Latency only: each run's stream is the shortest.

        One real run of each cannot order plans closer than the run-to-run spread: ResNet-18 device-only against
        server-only at 1 Gbps was measured faster in 11 and 9 of 20 rounds here (BENCHMARKS.md).
        """
        from scipy.stats import binomtest

        if rounds < 1:
            raise HwlatError(f"a race needs at least 1 round, got {rounds}")
        if first == second:
            raise HwlatError(f"a race needs two different plans, got {self.label(first)} twice")
        predicted = {plan: self.evaluate(plan, network) for plan in (first, second)}
        ratios = []
        for index in range(rounds):
            order = (first, second) if index % 2 == 0 else (second, first)
            measured = {plan: self.verify(plan, network, predicted[plan], seconds=0.0,
                                          energy=False)["measured_latency_ms"] for plan in order}
            ratios.append(measured[first] / measured[second])
        wins, decided = sum(r < 1 for r in ratios), sum(r != 1 for r in ratios)
        p_value = float(binomtest(wins, decided).pvalue) if decided else 1.0
        faster = "neither" if p_value >= RACE_ALPHA else "first" if 2 * wins > decided else "second"
        return {"race_rounds": rounds, "race_first_wins": wins, "race_p_value": p_value,
                "race_median_ratio": float(pd.Series(ratios).median()), "race_faster": faster}


@dataclass
class SplitResult:
    """Every evaluated plan per bandwidth (a DataFrame), the cut points and the settings."""

    table: pd.DataFrame
    cuts: list[CutPoint]
    settings: dict = field(default_factory=dict)

    def chosen(self) -> pd.DataFrame:
        """Per bandwidth, the plan with the lowest predicted latency (with its measurements when verified), the
        runner-up, how much slower it is predicted (`runner_up_margin`, relative) and whether that is a
        `close_call` (a margin under `CLOSE_CALL`: run both for real before relying on the order)."""
        rows = []
        for _, plans in self.table.groupby("bandwidth", sort=False):
            best, runner_up, margin = _best_and_runner_up(plans)
            rows.append(plans.loc[best].to_dict() | {
                "runner_up": None if runner_up is None else plans.loc[runner_up, "plan"],
                "runner_up_margin": margin, "close_call": bool(margin < CLOSE_CALL)})
        return pd.DataFrame(rows)

    def report(self, prefix: str):
        """Write ``<prefix>-<bandwidth>.html/.csv/.json`` (fronts; a per-link label's ``/`` as ``_``, e.g.
        ``split-10Mbps_1Gbps.html``) and ``<prefix>.csv/.json`` (all plans)."""
        import json

        from hwlat._files import write_atomically
        from hwlat.reports import ParetoReport

        base = check_report_prefix(prefix)
        lowest_energy = ({bandwidth: rows.loc[rows["device_energy_mj"].idxmin(), "plan"]
                          for bandwidth, rows in self.table.groupby("bandwidth", sort=False)}
                         if "device_energy_mj" in self.table else {})
        choices = {row["bandwidth"]: {"chosen": row["plan"], "close_call": bool(row["close_call"]),
                                      **({"lowest_device_energy": lowest_energy[row["bandwidth"]]}
                                         if lowest_energy else {}),
                                      **({"runner_up": row["runner_up"],
                                          "runner_up_margin": round(float(row["runner_up_margin"]), 4)}
                                         if isinstance(row["runner_up"], str) else {}),
                                      **({key: row[key] for key in _RACE_KEYS}
                                         if isinstance(row.get("race_rival"), str) else {})}
                   for row in self.chosen().to_dict("records")}
        written = []
        for bandwidth, rows in self.table.groupby("bandwidth", sort=False):
            report = ParetoReport(f"Split of {self.settings['model']} at {bandwidth}", rows.reset_index(drop=True),
                                  front_objectives(rows), label="plan",
                                  settings={**self.settings, "bandwidth": bandwidth, **choices[bandwidth]})
            written += list(report.write(base.with_name(f"{base.name}-{bandwidth.replace('/', '_')}")).values())
        paths = {base.with_name(f"{base.name}.{kind}"): kind for kind in ("csv", "json")}
        summary = {"settings": self.settings, "chosen": json.loads(self.chosen().to_json(orient="records")),
                   "cuts": [{"index": c.index, "after": c.after, "tensors": list(c.tensors), "bytes": c.nbytes,
                             "compressed_bytes": c.compressed_bytes(self.settings["compression"])} for c in self.cuts]}
        write_atomically({path: (lambda p: self.table.to_csv(p, index=False)) if kind == "csv"
                          else (lambda p: p.write_text(json.dumps(summary, indent=2, default=str)))
                          for path, kind in paths.items()})
        return [*written, *paths]


def front_objectives(plans: pd.DataFrame) -> tuple:
    """The objectives of a split's Pareto front: latency and throughput, and device energy when it was predicted."""
    from hwlat.reports import Objective

    energy = (Objective("device_energy_mj", "min", "predicted device energy per input (mJ)"),)
    return (Objective("latency_ms", "min", "predicted end-to-end latency (ms)"),
            Objective("throughput_per_s", "max", "predicted throughput (inferences/s)"),
            *(energy if "device_energy_mj" in plans else ()))


def _best_and_runner_up(plans: pd.DataFrame) -> tuple:
    """Index labels of a bandwidth's chosen plan (`best_latency`) and of the next by predicted latency (None if
    it is alone), and how much slower that runner-up is predicted (relative; NaN when alone)."""
    ranked = plans.sort_values("latency_ms", kind="stable")
    best = ranked.index[ranked["best_latency"]][0]
    others = ranked.index[~ranked["best_latency"]]
    if not len(others):
        return best, None, float("nan")
    return best, others[0], plans.loc[others[0], "latency_ms"] / plans.loc[best, "latency_ms"] - 1


def check_report_prefix(prefix: str):
    """`prefix` as a Path if its folder exists (checked before long work), else HwlatError."""
    from pathlib import Path

    base = Path(prefix)
    if not base.parent.is_dir():
        raise HwlatError(f"cannot write report {base}: directory {base.parent} does not exist")
    return base


def _search_plans(session: SplitSession, network: Network, trials: int, seed: int) -> list[Plan]:
    """Plans proposed by Optuna (multi-objective TPE: min latency, max throughput, min device energy when the
    session predicts it) on `network`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    energy = session.device_power is not None
    study = optuna.create_study(directions=["minimize", "maximize", *(["minimize"] if energy else [])],
                                sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
    seen: dict[Plan, dict] = {}

    def objective(trial) -> tuple[float, ...]:
        chosen = [session.candidates[trial.suggest_int(f"cut{k}", 0, len(session.candidates) - 1)]
                  for k in range(1, session.stages)]
        if any(b <= a for a, b in itertools.pairwise(chosen)):
            raise optuna.TrialPruned()  # stages must follow each other in the graph
        plan = Plan(tuple(chosen))
        seen[plan] = session.evaluate(plan, network)
        return (seen[plan]["latency_ms"], seen[plan]["throughput_per_s"],
                *([seen[plan]["device_energy_mj"]] if energy else []))

    study.optimize(objective, n_trials=trials)
    return list(seen)


def _sides_note(sides: Sequence[Side]) -> str:
    """Where the sides run and what the links are, for the report's settings."""
    remote = [side.spec for side in sides if side.remote]
    where = ("all sides run on this machine's CPU in separate processes pinned as given" if not remote else
             f"segments of {', '.join(remote)} are timed on those remote devices through TVM RPC (predicted only; "
             f"their codecs and transport measured on this machine); the other sides run on this machine's CPU "
             f"in separate processes pinned as given")
    return f"{where}; each link is loopback TCP rate-limited by a token-bucket writer, delayed by RTT/2 per message"


def analyze_split(model: str, sides: Sequence[Side], bandwidths: Sequence[float | Sequence[float] | str | Network],
                  rtt_ms: float | Sequence[float] = 0.0, compression: str = "none", max_tensors: int = 1,
                  verify: str = "none",
                  enumerate_limit: int = 100, trials: int = 60, seed: int = 0,
                  protocol: MeasurementProtocol = PART_PROTOCOL, run_protocol: MeasurementProtocol = RUN_PROTOCOL,
                  stream_seconds: float = 1.0, on_plan: Callable[[str, dict], None] | None = None,
                  cuts: Sequence[str] | None = None, race_rounds: int = 0, race: str = "close",
                  device_power: DevicePower | str | None = None,
                  energy_meter: EnergyMeter | None = None, batch_size: int = 1,
                  segment_times: str = "segments") -> SplitResult:
    """Rank split plans of `model` over `sides` (device first) for each bandwidth, optionally verified.

    Each bandwidth is one network (`as_network`): a rate in bit/s for every link (labelled e.g. 100Mbps), rates per
    link (the forward links device -> s1 -> ..., then optionally the return link, else the return goes over the
    device's link at the first rate; labelled e.g. 10Mbps/1Gbps), their text (``"10Mbps/1Gbps"``) or a `Network`;
    `rtt_ms` is the links' round-trip time where rates are given: one for every link, or one per link (counted like
    the rates).

    `cuts` (node or tensor names) restricts the plans to those cut points (each one a plan with 2 stages).
    Plans are enumerated when there are at most `enumerate_limit`, else searched with Optuna (`trials` per
    bandwidth). `verify`: "none", "chosen" (the lowest-latency plan), "front" or "all" are run for real;
    parts are timed with `protocol`, real runs' latency with `run_protocol`, their throughput over about
    `stream_seconds` of stream. With `race_rounds`, the chosen plan is raced (`SplitSession.race`) against its
    rival, the fastest other plan measured when all were run (verify="all"), else the predicted runner-up: at close
    calls (`race="close"`: runner-up predicted less than `CLOSE_CALL` slower) or at every bandwidth (`race="all"`).
    The chosen row gets the race's columns and `race_rival`. `device_power` (a DevicePower, or "measure" with
    `energy_meter`) adds `device_energy_mj` per plan, and energy joins the front; with `energy_meter`, real runs
    add `measured_device_energy_mj`. `batch_size`: samples per input, `segment_times`: how segments are timed (see
    `SplitSession`).
    """
    if verify not in ("none", "chosen", "front", "all"):
        raise HwlatError(f"verify must be none, chosen, front or all, got {verify!r}")
    if race_rounds < 0:
        raise HwlatError(f"race rounds must be >= 0, got {race_rounds}")
    if race not in ("close", "all"):
        raise HwlatError(f"race must be close or all, got {race!r}")
    if not bandwidths:
        raise HwlatError("at least one bandwidth is needed")
    remote = [side.spec for side in sides if side.remote]
    if remote and (verify != "none" or race_rounds):
        raise HwlatError(f"sides on remote devices ({', '.join(remote)}) are predicted, not run for real: "
                         f"drop --verify and --race")
    networks = [as_network(bandwidth, len(sides), rtt_ms) for bandwidth in bandwidths]
    with SplitSession(model, sides, compression, max_tensors, protocol, run_protocol, cuts, device_power,
                      energy_meter, batch_size, segment_times) as session:
        exhaustive = math.comb(len(session.candidates), session.stages - 1) <= enumerate_limit
        rows = []
        for network in networks:
            plans = session.all_plans() if exhaustive else _search_plans(session, network, trials, seed)
            frame = pd.DataFrame([{"bandwidth": network.label, "plan": session.label(p),
                                   "after": ",".join(session.cuts[k].after for k in p.positions),
                                   "positions": p.positions, **session.evaluate(p, network)} for p in plans])
            frame["best_latency"] = frame.index == frame["latency_ms"].idxmin()
            frame["best_throughput"] = frame.index == frame["throughput_per_s"].idxmax()
            from hwlat.reports import pareto_front

            frame["on_front"] = pareto_front(frame, front_objectives(frame))
            pick = {"none": frame.index[:0], "chosen": frame.index[frame["best_latency"]],
                    "front": frame.index[frame["on_front"]], "all": frame.index}[verify]
            for index in pick:
                row = frame.loc[index]
                measured = session.verify(Plan(tuple(row["positions"])), network, row.to_dict(), stream_seconds)
                for key, value in measured.items():
                    frame.loc[index, key] = value
                if on_plan:
                    on_plan(row["plan"], {**row.to_dict(), **measured})
            best, runner_up, margin = _best_and_runner_up(frame)
            if race_rounds and runner_up is not None and (race == "all" or margin < CLOSE_CALL):
                rival = (frame.drop(index=best)["measured_latency_ms"].idxmin() if verify == "all" else runner_up)
                raced = session.race(*(Plan(tuple(frame.loc[i, "positions"])) for i in (best, rival)), network,
                                     race_rounds)
                for key, value in {"race_rival": frame.loc[rival, "plan"], **raced}.items():
                    frame.loc[best, key] = value
            rows.append(frame)
        table = pd.concat(rows, ignore_index=True)
        if verify != "none":
            table["latency_error"] = table["latency_ms"] / table["measured_latency_ms"] - 1
        if {"device_energy_mj", "measured_device_energy_mj"} <= set(table):
            table["energy_error"] = table["device_energy_mj"] / table["measured_device_energy_mj"] - 1
        settings = {"model": model, "onnx": str(session.model.path),
                    "sides": {("device" if s == 0 else f"s{s}"): side.spec for s, side in enumerate(sides)},
                    "tvm_records": {("device" if s == 0 else f"s{s}"): side.tuning_records
                                    for s, side in enumerate(sides) if side.tuning_records} or None,
                    "rtt_ms": rtt_ms, "compression": compression, "max_tensors": max_tensors, "batch_size": batch_size,
                    "segment_times": segment_times,
                    "links": {network.label: [{"bandwidth": format_bandwidth(link.bandwidth_bps),
                                               "rtt_ms": link.rtt_ms} for link in network.links]
                              for network in networks},
                    "cut_points": len(session.cuts),
                    "candidate_cuts": None if cuts is None else [session.cuts[p].after for p in session.candidates],
                    "search": "enumeration" if exhaustive else f"optuna TPE, {trials} trials",
                    "verify": verify, "race_rounds": race_rounds, "race": race, "part_protocol": protocol.as_dict(),
                    "run_protocol": run_protocol.as_dict(), "stream_seconds": stream_seconds,
                    "device_power": None if session.device_power is None else session.device_power.as_dict(),
                    "energy_meter": None if energy_meter is None else energy_meter.name,
                    "note": _sides_note(sides)}
        return SplitResult(table, session.cuts, settings)
