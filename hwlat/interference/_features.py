"""Inputs of the interference models: the co-runners' metric windows, descriptors, and their normalisation.

A model sees what is known before the target is placed: the metric window recorded while the co-runners ran
alone (phase "corunners"), the target's descriptors (isolated latency, FLOPs, params, runtime, threads) and the
co-runners' (process count, threads, kinds). Per-core columns become core-count-free aggregates, so machines
with different core counts share one model; hardware counters may be absent or NaN.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError
from hwlat.profilers._pressure import PRESSURE_COLUMNS

#: what the models predict, each a statistic of the co-located latency over the isolated median: its median, p90
#: and p99 (the quantile targets, ordered), then its mean, whose knife edge is smooth: the median of a target of
#: about half a time slice flips between ~1x and ~3.6x from one scenario to the next, the mean moves with the share
#: of inferences preempted (`_time_slice`)
TARGETS = ("slowdown", "slowdown_p90", "slowdown_p99", "slowdown_mean")
#: the leading TARGETS that are latency quantiles (`_TARGET_QUANTILES`); predictions keep them ordered
QUANTILE_TARGETS = TARGETS[:3]
#: phase of the metrics that describes the co-runners alone (known before the target is placed)
PHASE = "corunners"
#: scenario columns the features read
SCENARIO_COLUMNS = ("scenario_id", "workload", "target", "target_runtime", "target_threads", "target_flops",
                    "target_params", "corunners", "n_corunner_procs", "isolated_median_ms")
#: columns of metrics.parquet that are no metric, and metrics that describe the target (absent before placement)
_NOT_METRICS = ("scenario_id", "phase", "step", "t_s", "target_latency_ms", "target_inferences")
_CORE = re.compile(r"cpu\d+_util")
#: aggregates that replace the per-core utilisation columns (fractions 0..1), whatever the number of cores
CORE_AGGREGATES = ("cpu_core_min", "cpu_core_max", "cpu_core_std", "cpu_free_cores")
#: numeric descriptors before the runtime and co-runner kind indicators
_DESCRIPTORS = ("log_isolated_ms", "log_flops", "log_params", "target_threads", "n_corunner_procs",
                "corunner_threads", "corunner_intensity", "corunner_load", "corunner_model_log_flops", "n_cores",
                "oversubscription")
#: optional descriptor groups (a model's `extras`): "load", the co-runners' measured CPU use (mean busy cores over
#: their window, all processes) and the oversubscription it implies with the target's threads; "threads", the
#: co-runners' nominal threads beyond the free cores and whether a multi-threaded target is oversubscribed;
#: "placement", where the co-runners run relative to the target (`_placement`); "slice", how the scheduler's time
#: slices cut the target's inferences when a CPU-bound co-runner shares its core (`_time_slice`); "pressure", the
#: co-runners' measured pressure on the target's cores (log slowdowns of the memory-streaming, cache-gathering and
#: compute probes, and the CPU share left; `hwlat.profilers.measure_pressure`, NaN where the dataset has none);
#: "refill", the log slowdown of the probe's first pass over an L2-resident buffer after a preemption (what the
#: co-runners on and beside the target's core make it pay to fetch its working set again once per slice)
_PLACED_KINDS = ("cpu", "membw", "cache", "model")
EXTRAS = {"load": ("busy_cores", "busy_oversubscription", "busy_excess_cores"),
          "threads": ("excess_threads", "multithread_oversubscribed"),
          "placement": ("shared_threads", "target_time_share",
                        *(f"{where}_load_{k}" for where in ("shared", "other") for k in _PLACED_KINDS)),
          "slice": ("slice_ratio", "slice_fraction", "slice_competitors", "slice_wait_ratio",
                    *(f"slice_log_{t}" for t in QUANTILE_TARGETS)),
          "pressure": ("pressure_log_stream", "pressure_log_gather", "pressure_log_compute", "pressure_share"),
          "refill": ("pressure_log_refill",)}
#: the effective scheduler time slice (ms) of scenarios recorded without one (`time_slice_ms`, measured by the recorder
#: since it exists): that of the machine the shipped datasets were recorded on. Its kernel ticks at CONFIG_HZ=250
#: (4 ms) and EEVDF's base slice (0.75 ms x (1 + log2 of 2 CPUs) = 1.5 ms) is shorter, so a CPU-bound task is
#: preempted at the next tick; pinned targets preempted beside a CPU stressor wait 4.05 ms (median), and
#: `hwlat.profilers.measure_time_slice_ms` measures 4.02-4.06 ms there
TIME_SLICE_MS = 4.0
#: quantile of the per-inference latency behind each of QUANTILE_TARGETS
_TARGET_QUANTILES = (0.5, 0.9, 0.99)
#: window statistics per metric for the aggregate-feature baselines
AGGREGATES = ("mean", "std", "min", "max", "p10", "p50", "p90")


@dataclass(frozen=True)
class InterferenceData:
    """Scenarios (one row each) with the co-runners' metric window of each (steps x `metric_names`, raw values).

    `scenarios` gains `n_cores` (per-core columns with data in the window) and `kinds` (co-runner kinds).
    """

    scenarios: pd.DataFrame
    metric_names: tuple[str, ...]
    windows: tuple[np.ndarray, ...]

    @classmethod
    def from_frames(cls, scenarios: pd.DataFrame, metrics: pd.DataFrame, *,
                    include_disturbed: bool = False) -> InterferenceData:
        """Pair each scenario with its "corunners" window; disturbed scenarios are dropped unless included."""
        missing = [c for c in SCENARIO_COLUMNS if c not in scenarios.columns]
        if missing:
            raise HwlatError(f"scenarios lack column(s) {', '.join(missing)}")
        for column in ("scenario_id", "phase", "step"):
            if column not in metrics.columns:
                raise HwlatError(f"metrics lack column {column!r}")
        if not include_disturbed and "disturbed" in scenarios.columns:
            scenarios = scenarios[scenarios["disturbed"].fillna(0).astype(int) == 0]
        scenarios = scenarios.reset_index(drop=True).copy()
        window = metrics[metrics["phase"] == PHASE].sort_values(["scenario_id", "step"])
        cores = [c for c in window.columns if _CORE.fullmatch(c)]
        names = [c for c in window.columns if c not in _NOT_METRICS and not _CORE.fullmatch(c)
                 and pd.api.types.is_numeric_dtype(window[c])]
        values = window[names].to_numpy(float)
        if cores:
            names += CORE_AGGREGATES
            values = np.hstack([values, _core_aggregates(window[cores].to_numpy(float))])
        groups = {sid: rows for sid, rows in window.groupby("scenario_id", sort=False).indices.items()}
        absent = [sid for sid in scenarios["scenario_id"] if sid not in groups]
        if absent:
            raise HwlatError(f"no {PHASE!r} metrics for {len(absent)} scenario(s), e.g. {absent[0]!r}")
        windows = tuple(values[groups[sid]] for sid in scenarios["scenario_id"])
        has_data = np.isfinite(window[cores].to_numpy(float))
        scenarios["n_cores"] = [float(has_data[groups[sid]].any(axis=0).sum()) if cores else np.nan
                                for sid in scenarios["scenario_id"]]
        scenarios["kinds"] = [[c.get("kind", "") for c in corunner_list(v)] for v in scenarios["corunners"]]
        return cls(scenarios, tuple(names), windows)

    @classmethod
    def load(cls, path, *, include_disturbed: bool = False) -> InterferenceData:
        """A co-location dataset directory (scenarios.csv, metrics.parquet) as written by the recorder."""
        from hwlat.profilers import load_colocation_dataset

        scenarios, metrics = load_colocation_dataset(path)
        return cls.from_frames(scenarios, metrics, include_disturbed=include_disturbed)

    def __len__(self) -> int:
        return len(self.scenarios)

    def subset(self, rows: Sequence[int] | np.ndarray) -> InterferenceData:
        """The scenarios at positions `rows`, in that order."""
        rows = np.asarray(rows, dtype=int)
        return InterferenceData(self.scenarios.iloc[rows].reset_index(drop=True), self.metric_names,
                                tuple(self.windows[i] for i in rows))

    def concat(self, other: InterferenceData) -> InterferenceData:
        """These scenarios followed by `other`'s, e.g. another recording to train on; a metric only one of them
        recorded (perf counters on one machine, not on another) is missing (NaN) in the other's windows."""
        names = (*self.metric_names, *(n for n in other.metric_names if n not in self.metric_names))
        windows = [_select_metrics(w, data.metric_names, names) for data in (self, other) for w in data.windows]
        return InterferenceData(pd.concat([self.scenarios, other.scenarios], ignore_index=True), names,
                                tuple(windows))

    def placement(self) -> pd.DataFrame:
        """The "placement" descriptors of each scenario (EXTRAS["placement"], see `_placement`); a scenario without a
        `placement` column is free."""
        rows = [_placement(*layout) for layout in self._layouts()]
        return pd.DataFrame(np.reshape(rows, (len(self), len(EXTRAS["placement"]))), columns=EXTRAS["placement"])

    def time_slice(self, slice_ms: float | None = None) -> pd.DataFrame:
        """The "slice" descriptors of each scenario (EXTRAS["slice"], see `_time_slice`) for a scheduler time slice
        of `slice_ms` (default: each scenario's `slice_ms()`): co-runners compete for the target's cores as
        `_layouts` places them, each counted in proportion to how much of a slice it runs before it sleeps
        (`_slice_use`)."""
        slice_ms = self.slice_ms() if slice_ms is None else np.full(len(self), float(slice_ms))
        competitors = np.array([_competitors(*layout) for layout in self._layouts()]).reshape(len(self))
        isolated = pd.to_numeric(self.scenarios["isolated_median_ms"], errors="coerce").to_numpy(float)
        values = _time_slice(isolated, competitors * _slice_use(self, slice_ms), slice_ms)
        return pd.DataFrame(values, columns=EXTRAS["slice"])

    def pressure(self) -> pd.DataFrame:
        """The "pressure" descriptors (EXTRAS["pressure"]) from the scenarios' measured pressure columns (NaN when
        the scenarios have none)."""
        table = self.scenarios
        raw = [pd.to_numeric(table[c], errors="coerce").to_numpy(float) if c in table.columns
               else np.full(len(table), np.nan) for c in PRESSURE_COLUMNS]
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.column_stack([np.log(raw[0]), np.log(raw[1]), np.log(raw[2]), raw[3]])
        return pd.DataFrame(values.reshape(len(table), 4), columns=EXTRAS["pressure"])

    def slice_ms(self) -> np.ndarray:
        """Each scenario's scheduler time slice (ms): the `time_slice_ms` the recorder measured on its machine, or
        `TIME_SLICE_MS` where the scenario has none (recorded before it was measured)."""
        recorded = pd.to_numeric(self.scenarios.get("time_slice_ms", pd.Series(np.nan, index=self.scenarios.index)),
                                 errors="coerce").to_numpy(float)
        return np.where(np.isfinite(recorded) & (recorded > 0), recorded, TIME_SLICE_MS)

    def slice_log_slowdowns(self) -> np.ndarray:
        """The time-slice mixture's log-slowdowns (n x len(TARGETS)): its quantiles (the last columns of `time_slice`)
        and its mean, 1 + competitors (an inference waits one competitor slice per slice of its own, on average)."""
        table = self.time_slice()
        mean = np.log1p(table["slice_ratio"].to_numpy(float) * table["slice_wait_ratio"].to_numpy(float))
        return np.column_stack([table[[f"slice_log_{t}" for t in QUANTILE_TARGETS]].to_numpy(float), mean])

    def _layouts(self) -> list[tuple[list[dict], tuple[np.ndarray, np.ndarray, np.ndarray] | None]]:
        """Each scenario's co-runners and their `_core_threads` layout (a scenario without a `placement` column is
        free)."""
        table = self.scenarios
        pinned = table["placement"].astype(str).eq("pinned") if "placement" in table.columns else [False] * len(table)
        threads = pd.to_numeric(table["target_threads"], errors="coerce")
        cores = pd.to_numeric(table["n_cores"], errors="coerce")
        corunners = [corunner_list(v) for v in table["corunners"]]
        return [(c, _core_threads(c, t, n, p)) for c, t, n, p in zip(corunners, threads, cores, pinned)]

    def targets(self) -> np.ndarray:
        """Measured slowdowns (n x len(TARGETS)); HwlatError when the scenarios carry none."""
        missing = [t for t in TARGETS if t not in self.scenarios.columns]
        if missing:
            mean = (" (loading derives slowdown_mean from the dataset's inferences.parquet)"
                    if "slowdown_mean" in missing else "")
            raise HwlatError(f"scenarios lack measured {', '.join(missing)}{mean}")
        values = self.scenarios[list(TARGETS)].to_numpy(float)
        if not np.all(np.isfinite(values) & (values > 0)):
            raise HwlatError("measured slowdowns must be finite and positive")
        return values


def corunner_list(value) -> list[dict]:
    """The co-runner entries of a scenario row (a JSON string or an already parsed list)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise HwlatError(f"corunners is not JSON: {value[:60]!r}") from None
    if not isinstance(value, list):
        return []
    return [c for c in value if isinstance(c, dict)]


def _core_aggregates(cores: np.ndarray) -> np.ndarray:
    """Min, max, std of the per-core utilisation (0..1) and the number of idle cores, per step (NaN if no data)."""
    with warnings.catch_warnings():  # an all-NaN step is a missing value here, not a problem
        warnings.simplefilter("ignore", RuntimeWarning)
        free = np.nansum(np.clip(1 - cores, 0, 1), axis=1)
        free[~np.isfinite(cores).any(axis=1)] = np.nan
        return np.column_stack([np.nanmin(cores, axis=1), np.nanmax(cores, axis=1), np.nanstd(cores, axis=1), free])


@dataclass(frozen=True)
class FeatureSpec:
    """Normalisation learnt from training scenarios only: kept metrics and their scale, descriptor scale, vocabularies.

    Rate metrics (`*_per_s`) are log1p-transformed first. A metric with no finite value in training is dropped; a
    metric absent at prediction time is NaN (a model's missing value). `extras` names the EXTRAS descriptor groups.
    """

    metrics: tuple[str, ...]
    metric_mean: np.ndarray
    metric_std: np.ndarray
    runtimes: tuple[str, ...]
    kinds: tuple[str, ...]
    descriptor_mean: np.ndarray
    descriptor_std: np.ndarray
    extras: tuple[str, ...] = ()

    @classmethod
    def fit(cls, data: InterferenceData, extras: Sequence[str] = ()) -> FeatureSpec:
        """Statistics of `data` (the training scenarios), with the descriptor groups `extras` (keys of EXTRAS)."""
        unknown = [e for e in extras if e not in EXTRAS]
        if unknown:
            raise HwlatError(f"unknown descriptor group(s) {', '.join(map(repr, unknown))} (known: {', '.join(EXTRAS)})")
        extras = tuple(extras)
        values = _transform(data.metric_names, np.vstack(data.windows))
        keep = np.isfinite(values).any(axis=0)
        mean, std = mean_std(values[:, keep])
        runtimes = tuple(sorted(set(data.scenarios["target_runtime"].astype(str))))
        kinds = tuple(sorted({k for kinds in data.scenarios["kinds"] for k in kinds}))
        metrics = tuple(n for n, k in zip(data.metric_names, keep) if k)
        spec = cls(metrics, mean, std, runtimes, kinds, np.zeros(0), np.zeros(0), extras)
        d_mean, d_std = mean_std(spec._raw_descriptors(data))
        return cls(metrics, mean, std, runtimes, kinds, d_mean, d_std, extras)

    @property
    def descriptor_names(self) -> tuple[str, ...]:
        """Names of the columns of `descriptors`."""
        return (*_DESCRIPTORS, *(n for e in self.extras for n in EXTRAS[e]), *(f"runtime={r}" for r in self.runtimes),
                *(f"kind={k}" for k in self.kinds))

    def windows(self, data: InterferenceData) -> list[np.ndarray]:
        """Each scenario's window over this spec's metrics, standardised; NaN where a value is missing."""
        return [(_transform(self.metrics, _select_metrics(window, data.metric_names, self.metrics)) - self.metric_mean)
                / self.metric_std for window in data.windows]

    def descriptors(self, data: InterferenceData) -> np.ndarray:
        """Standardised descriptors (n x len(descriptor_names)); a missing value is the training mean (0)."""
        values = (self._raw_descriptors(data) - self.descriptor_mean) / self.descriptor_std
        return np.nan_to_num(values, nan=0.0)

    def aggregates(self, data: InterferenceData) -> np.ndarray:
        """Window statistics (AGGREGATES) of each standardised metric; NaN where a metric has no value in a window."""
        rows = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for window in self.windows(data):
                q10, q50, q90 = np.nanpercentile(window, [10, 50, 90], axis=0)
                rows.append(np.concatenate([np.nanmean(window, 0), np.nanstd(window, 0), np.nanmin(window, 0),
                                            np.nanmax(window, 0), q10, q50, q90]))
        return np.asarray(rows).reshape(len(data), len(AGGREGATES) * len(self.metrics))

    def _raw_descriptors(self, data: InterferenceData) -> np.ndarray:
        table = data.scenarios
        corunners = [corunner_list(v) for v in table["corunners"]]
        threads = np.array([sum(_number(c.get("threads"), 1.0) for c in cs) for cs in corunners])
        intensity = np.array([np.mean([_number(c.get("intensity"), 1.0) for c in cs]) if cs else 0.0
                              for cs in corunners])
        load = np.array([sum(_number(c.get("threads"), 1.0) * _number(c.get("intensity"), 1.0) for c in cs)
                         for cs in corunners])  # busy threads on average
        model_flops = np.log1p([sum(_model_flops(c.get("name", "")) * _number(c.get("intensity"), 1.0)
                                    for c in cs if c.get("kind") == "model") for cs in corunners])

        def numeric(column: str) -> np.ndarray:
            return pd.to_numeric(table[column], errors="coerce").to_numpy(float)

        with np.errstate(divide="ignore", invalid="ignore"):
            target_threads, cores = numeric("target_threads"), numeric("n_cores")
            columns = [np.log(numeric("isolated_median_ms")), np.log1p(numeric("target_flops")),
                       np.log1p(numeric("target_params")), target_threads, numeric("n_corunner_procs"), threads,
                       intensity, load, model_flops, cores, (target_threads + load) / cores]
            if "load" in self.extras:
                busy = _busy_cores(data) * cores
                columns += [busy, (target_threads + busy) / cores, np.maximum(0, target_threads + busy - cores)]
            if "threads" in self.extras:
                excess = np.maximum(0, target_threads + threads - cores)
                columns += [excess, ((target_threads > 1) & (excess > 0)).astype(float)]
            if "placement" in self.extras:
                columns += list(data.placement().to_numpy(float).T)
            if "slice" in self.extras:
                columns += list(data.time_slice().to_numpy(float).T)
            if "pressure" in self.extras:
                columns += list(data.pressure().to_numpy(float).T)
            if "refill" in self.extras:
                columns.append(np.log(numeric("pressure_refill")) if "pressure_refill" in table.columns
                               else np.full(len(table), np.nan))
        runtime = table["target_runtime"].astype(str).to_numpy()
        columns += [(runtime == r).astype(float) for r in self.runtimes]
        columns += [np.array([kinds.count(k) for kinds in table["kinds"]], dtype=float) for k in self.kinds]
        values = np.column_stack(columns) if len(table) else np.zeros((0, len(columns)))
        values[~np.isfinite(values)] = np.nan
        return values

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-ready names and the statistics as arrays, for a model file."""
        header = {"metrics": list(self.metrics), "runtimes": list(self.runtimes), "kinds": list(self.kinds),
                  "extras": list(self.extras)}
        arrays = {"metric_mean": self.metric_mean, "metric_std": self.metric_std,
                  "descriptor_mean": self.descriptor_mean, "descriptor_std": self.descriptor_std}
        return header, arrays

    @classmethod
    def from_arrays(cls, header: dict, arrays: dict[str, np.ndarray]) -> FeatureSpec:
        """The spec `to_arrays` described."""
        return cls(tuple(header["metrics"]), arrays["metric_mean"], arrays["metric_std"], tuple(header["runtimes"]),
                   tuple(header["kinds"]), arrays["descriptor_mean"], arrays["descriptor_std"],
                   tuple(header.get("extras", ())))


def _busy_cores(data: InterferenceData) -> np.ndarray:
    """Mean share of the CPU in use over each scenario's co-runner window (0-1; NaN without `cpu_util_mean`)."""
    if "cpu_util_mean" not in data.metric_names:
        return np.full(len(data), np.nan)
    column = data.metric_names.index("cpu_util_mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array([np.nanmean(w[:, column]) if len(w) else np.nan for w in data.windows])


def _core_threads(corunners: list[dict], target_threads: float, n_cores: float,
                  pinned: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Where a scenario's threads run, per core: the target's threads, how much of each core is the target's (1/0
    when pinned; when free its threads over the cores, everywhere) and each co-runner's threads (co-runners x cores).
    Pinned scenarios follow `pinned_cpus`; free ones the expectation when every process's threads spread evenly over
    all cores. None without a known core count or target thread count."""
    from hwlat.profilers._colocation_spec import pinned_cpus

    if not (np.isfinite(n_cores) and n_cores >= 1 and np.isfinite(target_threads) and target_threads >= 1):
        return None
    cores = int(n_cores)
    threads = [max(1, int(_number(c.get("threads"), 1.0))) for c in corunners]
    if pinned:
        target, sets = pinned_cpus(int(target_threads), threads, range(cores))
    else:
        target, sets = tuple(range(cores)), tuple(tuple(range(cores)) for _ in threads)
    own = np.zeros(cores)
    own[list(target)] = target_threads / len(target)
    spread = np.zeros((len(corunners), cores))
    for row, t, cpus in zip(spread, threads, sets):
        row[list(cpus)] = t / len(cpus)
    mine = own > 0 if pinned else np.full(cores, min(1.0, target_threads / cores))
    return own, mine.astype(float), spread


def _placement(corunners: list[dict], layout: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> np.ndarray:
    """The "placement" descriptors of one scenario (`layout` from `_core_threads`): co-runner threads on the target's
    cores, the target's CPU share there under fair scheduling (its threads over its threads plus the co-runners'
    intensity-weighted threads, averaged over its cores) and the co-runners' intensity-weighted threads per kind on
    the target's cores and on the other cores. NaN without a layout."""
    if layout is None:
        return np.full(len(EXTRAS["placement"]), np.nan)
    own, mine, spread = layout
    # intensity-weighted co-runner threads per kind and core
    load = np.zeros((len(_PLACED_KINDS), len(own)))
    for c, row in zip(corunners, spread):
        if c.get("kind") in _PLACED_KINDS:
            load[_PLACED_KINDS.index(c["kind"])] += row * _number(c.get("intensity"), 1.0)
    # the target's share where it has threads, weighted by its threads there
    share = own / (own + load.sum(axis=0))
    mask = own > 0
    return np.array([spread.sum(axis=0) @ mine, float(np.average(share[mask], weights=own[mask])), *(load @ mine),
                     *(load @ (1 - mine))])


def _competitors(corunners: list[dict], layout: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> float:
    """Intensity-weighted co-runner threads on the busiest core the target runs on (a multi-threaded inference waits
    for its slowest thread); NaN without a layout."""
    if layout is None:
        return np.nan
    own, _, spread = layout
    intensity = np.array([_number(c.get("intensity"), 1.0) for c in corunners])
    return float((intensity @ spread)[own > 0].max()) if len(corunners) else 0.0


def _slice_use(data: InterferenceData, slice_ms: np.ndarray) -> np.ndarray:
    """How much of a time slice the co-runners use before they sleep (0-1), from their window: busy CPU time per
    context switch over `slice_ms`. CPU-bound stressors run whole slices; a multi-threaded model co-runner that
    waits passively between operators wakes and sleeps every few microseconds and barely delays the target.
    1 (CPU-bound) when the window lacks `cpu_util_mean` or `ctx_switches_per_s`."""
    if not {"cpu_util_mean", "ctx_switches_per_s"} <= set(data.metric_names):
        return np.ones(len(data))
    busy, switches = data.metric_names.index("cpu_util_mean"), data.metric_names.index("ctx_switches_per_s")
    cores = pd.to_numeric(data.scenarios["n_cores"], errors="coerce").to_numpy(float)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        burst_ms = np.array([np.nanmean(w[:, busy]) * c * 1000 / np.nanmean(w[:, switches]) if len(w) else np.nan
                             for w, c in zip(data.windows, cores)])
    return np.where(np.isfinite(burst_ms), np.clip(burst_ms / slice_ms, 0, 1), 1.0)


def _time_slice(isolated_ms: np.ndarray, competitors: np.ndarray, slice_ms: np.ndarray) -> np.ndarray:
    """The "slice" descriptors (n x len(EXTRAS["slice"])) of targets whose inferences take `isolated_ms` alone beside
    `competitors` CPU-bound co-runner threads on their core (round-robin time slices of `slice_ms`).

    An inference of x = isolated / slice slices that starts at a uniformly random point of the target's slice
    crosses floor(x) slice ends, or one more with probability frac(x), and waits competitors * slice at each. So
    its latency is a two-point mixture and the q-quantile slowdown is 1 + k_q * competitors * slice / isolated with
    k_q = floor(x) + [q >= 1 - frac(x)]: beside one CPU-bound co-runner the median stays 1 while x < 0.5 (most
    inferences fit between two preemptions) and jumps to ~3 just above it; the mean is 1 + competitors.
    Columns: x, frac(x), competitors, the wait per preemption over the isolated latency, and the log-slowdowns of
    QUANTILE_TARGETS under this model.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = isolated_ms / slice_ms
        whole = np.floor(ratio)
        fraction = ratio - whole
        wait = competitors * slice_ms / isolated_ms
        quantiles = [np.log1p((whole + (q >= 1 - fraction)) * wait) for q in _TARGET_QUANTILES]
    return np.column_stack([ratio, fraction, competitors, wait, *quantiles])


def _transform(names: Sequence[str], values: np.ndarray) -> np.ndarray:
    """log1p of the rate metrics (heavy-tailed counts per second), other metrics unchanged."""
    values = values.astype(float, copy=True)
    for i, name in enumerate(names):
        if name.endswith("_per_s"):
            values[:, i] = np.log1p(np.clip(values[:, i], 0, None))
    return values


def mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations ignoring NaN (0 and 1 for a column without values or spread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    mean = np.nan_to_num(mean, nan=0.0)
    std = np.where(np.isfinite(std) & (std > 1e-9), std, 1.0)
    return mean, std


@functools.lru_cache(maxsize=256)
def _model_flops(name: str) -> float:
    """FLOPs of a co-runner model named "space:arch" (NaN when the name is no architecture of a known space)."""
    from hwlat.spaces import get_space

    space, _, arch = name.partition(":")
    try:
        return float(get_space(space).flops(arch))
    except HwlatError:
        return np.nan


def _number(value, default: float) -> float:
    """A JSON field as a float, `default` when it is missing or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _select_metrics(window: np.ndarray, names: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """The columns `wanted` of a window whose columns are `names`, NaN for a metric it lacks."""
    where = {n: i for i, n in enumerate(names)}
    padded = np.column_stack([window, np.full(len(window), np.nan)])  # column -1: an absent metric
    return padded[:, [where.get(n, -1) for n in wanted]]
