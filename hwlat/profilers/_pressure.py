"""Memory and CPU pressure of a co-runner workload, measured with probes where the target would run.

This VM has no hardware counters (`perf` reports LLC misses and bandwidth as not supported), so the co-runners'
memory traffic is measured the way Bubble-Up (Mars et al., MICRO 2011) scores a co-runner's pressure: small
reference kernels run beside the workload and their slowdown is the score. A probe process per target core (pinned
as the target would be) times three kernels in chunks of 0.05-0.3 ms, far shorter than a scheduler time slice:

- ``stream``: copies 1 MiB chunks out of a 128 MiB array (memory bandwidth),
- ``gather``: 4096 random reads from a buffer the size of the last-level cache (cache capacity),
- ``compute``: L1-resident maths (the core's own speed: frequency, shared execution units).

and, in phases of their own (the kernels above would evict it), ``refill``: a 512 KiB buffer that lives in L2 is
summed over and over. A process sharing the probe's core preempts it once per slice and evicts what it can; the
first traversal after a preemption fetches the buffer again, from L3 if the other cores left it there, from DRAM
if they thrash L3. A target of about half a slice pays that refill once per slice, and it decides whether the
target's inferences fit between two preemptions (measured on data/interference-cpu-pinned-c: a cache or memory
thrasher on the other core flips the median of a 0.43-slice target from 1.05x to 3.6x, a CPU-bound one does not;
on a later recording of other cells, data/interference-cpu-pinned-d, it orders the flips less well and did not
improve the models: BENCHMARKS.md). It is a noisy measure on a virtual machine: with nothing else on the
probe's core it rests on a few stray preemptions (usually 1.0, 1.5-1.8 in 2 of 28 probes beside cpu-x1), and beside
an L1-resident hog on the core it ranged 1.1-2.8 between probes (the host may move the virtual CPU while it waits);
beside a cache thrasher 3.3-5.1.

The median chunk time is unaffected by preemption (few chunks straddle a slice end), so its ratio beside the
workload over alone is the contention a target's own work suffers; ``share``, the probe's on-core time over its
wall time beside the workload over alone, is the CPU share the workload leaves on that core. A workload is probed
once per placement, intensity and target thread count (it does not depend on the target), alone and beside the
workload in alternation, so slow drift of the machine cancels; the pressure is the worst over the target's cores
(a multi-threaded inference waits for its slowest thread) and the median over the rounds. Fresh processes measure
differently (a 128 MiB array lands on other physical pages), so a dataset's pressure is the median of several
measurements (`record_pressure`'s `repeats`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hwlat._errors import HwlatError
from hwlat._files import write_atomically
from hwlat.profilers._colocation import LEAD_S, STARTUP_TIMEOUT_S, ChildProcess, stop_children
from hwlat.profilers._colocation_child import start_at
from hwlat.profilers._colocation_spec import PLACEMENTS, WorkloadMix, pinned_cpus
from hwlat.profilers._stressors import llc_bytes

if TYPE_CHECKING:  # pandas is imported where needed: co-location children start threads only after pinning
    import pandas as pd

#: probe kernels, in the order each round runs them
KERNELS = ("stream", "gather", "compute")
#: what a pressure measurement holds: each kernel's median chunk time beside the workload over alone, the probe's
#: on-core share beside the workload over alone, and the refill: the mean traversal of the L2-resident buffer right
#: after a preemption beside the workload (the median traversal beside it when nothing preempts the probe) over the
#: median traversal alone
PRESSURE_COLUMNS = tuple(f"pressure_{name}" for name in (*KERNELS, "share", "refill"))
#: columns added after the first pressure files were written: such files load with NaN there
_ADDED_LATER = ("pressure_refill",)
#: what identifies a measurement: the workload, where it runs, how hard, and the target threads it is measured for
PRESSURE_KEYS = ("workload", "placement", "intensity", "target_threads")
PRESSURE_FILE = "pressure.csv"
_STREAM_BYTES = 128 * 1024 ** 2
_STREAM_CHUNK = 1024 ** 2
_GATHERS = 4096
_REFILL_BYTES = 512 * 1024
#: a traversal of the refill buffer (~0.02-0.1 ms) that took longer than this waited for another process's slice
_PREEMPTED_S = 1e-3


class PressureProbe:
    """The probe kernels (run in a `_colocation_child` process of kind "probe")."""

    def __init__(self) -> None:
        self._source = np.ones(_STREAM_BYTES // 8)
        self._copy = np.empty(_STREAM_CHUNK // 8)
        self._offset = 0
        self._buffer = np.ones(llc_bytes() // 8)
        self._indices = np.random.default_rng(0).integers(0, self._buffer.size, size=_GATHERS)
        self._gathered = np.empty(_GATHERS)
        self._values = np.linspace(0.0, 1.0, 1024)
        self._resident = np.ones(_REFILL_BYTES // 8)
        self.kernels: dict[str, Callable[[], None]] = {"stream": self._stream, "gather": self._gather,
                                                      "compute": self._compute}

    def _stream(self) -> None:
        start = self._offset
        np.copyto(self._copy, self._source[start:start + self._copy.size])
        self._offset = (start + self._copy.size) % (self._source.size - self._copy.size)

    def _gather(self) -> None:
        np.take(self._buffer, self._indices, out=self._gathered)

    def _compute(self) -> None:
        for _ in range(5):
            np.sin(self._values, out=self._values)

    def run(self, command: dict) -> dict:
        """From `t0` for `seconds`: the kernels in turn, each chunk timed; each kernel's median chunk (ms) and the
        on-core share (the chunks' medians times their counts over the time all chunks took). With `refill` set,
        `_refill` instead."""
        if command.get("refill"):
            return self._refill(command)
        t0, end = command["t0"], command["t0"] + command["seconds"]
        times: dict[str, list[float]] = {name: [] for name in KERNELS}
        start_at(t0)
        while time.perf_counter() < end:
            for name, kernel in self.kernels.items():
                started = time.perf_counter()
                kernel()
                times[name].append(time.perf_counter() - started)
        medians = {name: float(np.median(values)) for name, values in times.items()}
        busy = sum(medians[name] * len(values) for name, values in times.items())
        return {"median_ms": {name: value * 1e3 for name, value in medians.items()},
                "share": busy / sum(sum(values) for values in times.values())}

    def _refill(self, command: dict) -> dict:
        """From `t0` for `seconds`: the L2-resident buffer summed over and over, each traversal timed; the median
        traversal (ms), and the mean of those right after a preempted one (NaN when none was preempted)."""
        t0, end = command["t0"], command["t0"] + command["seconds"]
        durations = []
        start_at(t0)
        while time.perf_counter() < end:
            started = time.perf_counter()
            self._resident.sum()
            durations.append(time.perf_counter() - started)
        took = np.asarray(durations)
        after = took[1:][(took[:-1] > _PREEMPTED_S) & (took[1:] <= _PREEMPTED_S)]
        return {"median_ms": float(np.median(took)) * 1e3,
                "after_preemption_ms": float(after.mean()) * 1e3 if len(after) else float("nan")}


def measure_pressure(workload: WorkloadMix | str, *, target_threads: int = 1, placement: str = "pinned",
                     intensity: float = 1.0, rounds: int = 3, seconds: float = 0.3) -> dict[str, float]:
    """The pressure (PRESSURE_COLUMNS) of `workload` on the cores a `target_threads` target would get under
    `placement`: `rounds` times the probes alone then beside the co-runners, `seconds` each."""
    workload = WorkloadMix.parse(workload) if isinstance(workload, str) else workload
    if placement not in PLACEMENTS:
        raise HwlatError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    if not (rounds >= 1 and seconds > 0 and target_threads >= 1 and 0 < intensity <= 1):
        raise HwlatError(f"pressure probing needs rounds >= 1, seconds > 0, target threads >= 1 and intensity in "
                         f"(0, 1], got {rounds}, {seconds}, {target_threads} and {intensity}")
    corunners = workload.corunners(intensity, 0.0)
    cores = sorted(os.sched_getaffinity(0))
    if placement == "pinned":
        target_cpus, corunner_cpus = pinned_cpus(target_threads, [c.threads for c in corunners], cores)
        probe_cpus: list[tuple[int, ...] | None] = [(cpu,) for cpu in target_cpus]
    else:
        corunner_cpus, probe_cpus = (None,) * len(corunners), [None] * min(target_threads, len(cores))
    children: list[ChildProcess] = []
    try:
        for corunner, cpus in zip(corunners, corunner_cpus):
            spec = {"kind": corunner.kind, "model": asdict(corunner.model) if corunner.model else None}
            children.append(ChildProcess(spec, corunner.threads, f"co-runner {corunner.as_dict()['name']}", cpus))
        running = list(children)
        for i, cpus in enumerate(probe_cpus):  # each registered at once, so a failed start stops the others
            children.append(ChildProcess({"kind": "probe"}, 1, f"pressure probe {i}", cpus))
        probes = children[len(running):]
        for child in children:
            child.receive(STARTUP_TIMEOUT_S, "start-up")
        measured = []
        for _ in range(rounds):
            alone, beside = (_probe_phase(probes, r, corunners, seconds) for r in ([], running))
            refill_alone, refill_beside = (_probe_phase(probes, r, corunners, seconds, refill=True)
                                           for r in ([], running))
            measured.append(_worst(alone, beside, refill_alone, refill_beside))
        return {name: float(np.median([m[name] for m in measured])) for name in PRESSURE_COLUMNS}
    finally:
        stop_children(children)


def _probe_phase(probes: list[ChildProcess], running: list[ChildProcess], corunners, seconds: float,
                 refill: bool = False) -> list[dict]:
    """Every probe for `seconds` from a common start (the refill traversals if `refill`), beside the `running`
    co-runners (paused again after)."""
    t0 = time.perf_counter() + LEAD_S
    for child, corunner in zip(running, corunners):
        child.send({"cmd": "go", "t0": t0, "start_s": corunner.start_s, "duty": corunner.intensity})
    for probe in probes:
        probe.send({"cmd": "probe", "t0": t0, "seconds": seconds, "refill": refill})
    answers = [probe.receive(seconds + 60.0, "pressure probe") for probe in probes]
    for child in running:
        child.send({"cmd": "pause"})
    for child in running:
        child.receive(60.0, "pressure pause")
    return answers


def _worst(alone: list[dict], beside: list[dict], refill_alone: list[dict],
           refill_beside: list[dict]) -> dict[str, float]:
    """Per probe (target core) the ratios beside / alone; the largest slowdown and the smallest share of them."""
    ratios = [{**{f"pressure_{k}": b["median_ms"][k] / a["median_ms"][k] for k in KERNELS},
               "pressure_share": b["share"] / a["share"],
               "pressure_refill": (rb["after_preemption_ms"] if np.isfinite(rb["after_preemption_ms"])
                                   else rb["median_ms"]) / ra["median_ms"]}
              for a, b, ra, rb in zip(alone, beside, refill_alone, refill_beside)]
    return {name: (min if name == "pressure_share" else max)(r[name] for r in ratios) for name in PRESSURE_COLUMNS}


def record_pressure(dataset: str | os.PathLike, *, repeats: int = 3, rounds: int = 3, seconds: float = 0.3,
                    on_start: Callable[[int, int], None] | None = None,
                    on_measured: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Probe every (workload, placement, intensity, target threads) of a co-location dataset until `pressure.csv`
    holds `repeats` complete measurements of each (rows written before a column existed are kept, and count for
    their columns in the medians, but not as measurements; fresh processes each time, one pass over all before the
    next, so the repeats are spread over the run; models use their median). The file is rewritten after each
    measurement, so an interrupted run resumes; returns the whole table."""
    import pandas as pd

    from hwlat.devices import local_device

    if repeats < 1:
        raise HwlatError(f"pressure repeats must be >= 1, got {repeats}")
    dataset = Path(dataset)
    scenarios = _read_csv(dataset / "scenarios.csv")
    if "placement" not in scenarios.columns:
        scenarios["placement"] = "free"
    missing = [c for c in PRESSURE_KEYS if c not in scenarios.columns]
    if missing:
        raise HwlatError(f"{str(dataset / 'scenarios.csv')!r} lacks column(s) {', '.join(missing)}")
    table = load_pressure(dataset)
    wanted = [tuple(row) for row in scenarios[list(PRESSURE_KEYS)].drop_duplicates().itertuples(index=False)]
    complete = table[table[list(PRESSURE_COLUMNS)].notna().all(axis=1)]  # older rows lack the refill
    have = complete[list(PRESSURE_KEYS)].astype(str).apply(tuple, axis=1).value_counts() if len(complete) else {}
    counts = [int(have.get(tuple(map(str, key)), 0)) for key in wanted]
    todo = [key for needed in range(repeats) for key, count in zip(wanted, counts) if count <= needed]
    if on_start:
        on_start(len(wanted) * repeats, len(wanted) * repeats - len(todo))
    device = local_device().id
    for workload, placement, intensity, threads in todo:
        values = measure_pressure(workload, target_threads=int(threads), placement=placement,
                                  intensity=float(intensity), rounds=rounds, seconds=seconds)
        row = {"workload": workload, "placement": placement, "intensity": float(intensity),
               "target_threads": int(threads), **values, "rounds": rounds, "seconds": seconds, "device_id": device,
               "measured_at": pd.Timestamp.now(tz="UTC").isoformat()}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True) if len(table) else pd.DataFrame([row])
        write_atomically({dataset / PRESSURE_FILE: lambda p: table.to_csv(p, index=False)})
        if on_measured:
            on_measured(row)
    return table


def load_pressure(dataset: str | os.PathLike) -> pd.DataFrame:
    """`pressure.csv` of a dataset directory (empty when there is none yet; NaN in columns added since it was
    written)."""
    import pandas as pd

    path = Path(dataset) / PRESSURE_FILE
    if not path.exists():
        return pd.DataFrame(columns=[*PRESSURE_KEYS, *PRESSURE_COLUMNS])
    table = _read_csv(path)
    for column in _ADDED_LATER:
        if column not in table.columns:
            table[column] = np.nan
    missing = [c for c in (*PRESSURE_KEYS, *PRESSURE_COLUMNS) if c not in table.columns]
    if missing:
        raise HwlatError(f"{str(path)!r} lacks column(s) {', '.join(missing)}")
    return table


def pressure_summary(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The median of each key's repeats (PRESSURE_COLUMNS per key), and how far single measurements stray from it
    (|measurement / its key's median - 1|: median, p90 and max per column)."""
    medians = table.groupby(list(PRESSURE_KEYS))[list(PRESSURE_COLUMNS)].median()
    stray = (table.set_index(list(PRESSURE_KEYS))[list(PRESSURE_COLUMNS)] / medians - 1).abs()
    return medians.reset_index(), stray.describe(percentiles=[0.5, 0.9]).loc[["50%", "90%", "max"]]


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except OSError as exc:
        raise HwlatError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise HwlatError(f"cannot read {str(path)!r}: {str(exc).splitlines()[0]}") from None


def join_pressure(scenarios: pd.DataFrame, pressure: pd.DataFrame) -> pd.DataFrame:
    """`scenarios` with the PRESSURE_COLUMNS of their workload, placement, intensity and target threads (NaN where
    `pressure` has no such measurement)."""
    import pandas as pd

    def keys(frame: pd.DataFrame) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays([frame["workload"].astype(str), frame["placement"].astype(str),
                                          frame["intensity"].astype(float).round(6),
                                          frame["target_threads"].astype(int)])

    joined = scenarios.drop(columns=[c for c in PRESSURE_COLUMNS if c in scenarios.columns])
    values = pressure[list(PRESSURE_COLUMNS)].set_axis(keys(pressure)) if len(pressure) else None
    for column in PRESSURE_COLUMNS:
        joined[column] = (values[column].groupby(level=[0, 1, 2, 3]).median().reindex(keys(joined)).to_numpy(float)
                          if values is not None else np.nan)
    return joined
