"""Latency under co-location for search: isolated latency x predicted slowdown beside a recorded workload."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError
from hwlat.interference._features import TARGETS, TIME_SLICE_MS, InterferenceData, corunner_list
from hwlat.interference._model import InterferenceModel
from hwlat.profilers._pressure import PRESSURE_COLUMNS
from hwlat.search import Metric, PredictedLatency, TableMetric
from hwlat.spaces import get_space

#: latency statistic under co-location -> the slowdown that scales the isolated median to it ("mean": the mean
#: latency, what throughput follows)
QUANTILES = {"median": "slowdown", "p90": "slowdown_p90", "p99": "slowdown_p99", "mean": "slowdown_mean"}


@dataclass(frozen=True)
class WorkloadSignature:
    """A co-runner workload as it looked alone: its co-runner list, the metric windows recorded for it, and its
    placement ("pinned": every process on fixed cores, "free": the scheduler's choice) and the scheduler's time slice
    on the machine it was recorded on, which set the placement and time-slice descriptors of the scenarios built
    from it, and its measured pressure per target thread count (`pressure`: (threads, values of
    `PRESSURE_COLUMNS`) pairs; empty when the dataset has no pressure.csv)."""

    workload: str
    corunners: tuple[dict, ...]
    n_cores: float
    metric_names: tuple[str, ...]
    windows: tuple[np.ndarray, ...]
    placement: str = "free"
    time_slice_ms: float = TIME_SLICE_MS
    pressure: tuple[tuple[int, tuple[float, ...]], ...] = ()

    @classmethod
    def from_data(cls, data: InterferenceData, workload: str, intensity: float | None = None,
                  placement: str | None = None) -> WorkloadSignature:
        """Every "corunners" recording of `workload` in `data` (at `intensity` and `placement`, needed when
        several were recorded)."""
        table = data.scenarios
        rows = np.flatnonzero(table["workload"].astype(str).to_numpy() == workload)
        if not len(rows):
            known = sorted(table["workload"].astype(str).unique())
            raise HwlatError(f"no scenario with workload {workload!r} (known: {', '.join(known[:10])}"
                             f"{', ...' if len(known) > 10 else ''})")
        corunners = [corunner_list(table["corunners"].iloc[i]) for i in rows]
        duty = [c[0].get("intensity", 1.0) if c else 1.0 for c in corunners]  # shared by a scenario's co-runners
        levels = sorted(set(duty))
        if intensity is None and len(levels) > 1:
            raise HwlatError(f"workload {workload!r} was recorded at intensities {levels}; choose one")
        chosen = levels[0] if intensity is None else float(intensity)
        keep = [k for k, level in enumerate(duty) if level == chosen]
        if not keep:
            raise HwlatError(f"workload {workload!r} has no recording at intensity {chosen} (recorded: {levels})")
        placements = (table["placement"].astype(str).iloc[rows].to_numpy() if "placement" in table.columns
                      else np.full(len(rows), "free"))
        recorded = sorted({placements[k] for k in keep})
        if placement is None and len(recorded) > 1:
            raise HwlatError(f"workload {workload!r} was recorded with placements {recorded}; choose one")
        where = recorded[0] if placement is None else placement
        keep = [k for k in keep if placements[k] == where]
        if not keep:
            raise HwlatError(f"workload {workload!r} has no recording with placement {where!r} (recorded: {recorded})")
        return cls(workload, tuple(corunners[keep[0]]), float(table["n_cores"].iloc[rows[keep[0]]]),
                   data.metric_names, tuple(data.windows[rows[k]] for k in keep), where,
                   float(np.median(data.slice_ms()[rows[keep]])), _pressure_by_threads(table.iloc[rows[keep]]))


class ColocatedLatency(Metric):
    """Latency (ms) of an arch beside a workload: its isolated median times the slowdown an interference model
    predicts from the workload's signature (averaged in log space over the signature's recordings).

    `isolated`: latencies alone on the device, as an adapted predictor, a search `Metric` (e.g. `LatencyLookup`)
    or a mapping arch -> ms. `quantile` (median, p90, p99 or mean) picks the predicted statistic. A cheap search metric,
    so latency constraints under co-location reject archs before costly ones.
    """

    goal = "min"

    def __init__(self, model: InterferenceModel, isolated, signature: WorkloadSignature, space: str = "nb201", *,
                 runtime: str = "onnxruntime", threads: int = 1, quantile: str = "p90", name: str | None = None) -> None:
        if quantile not in QUANTILES:
            raise HwlatError(f"unknown latency quantile {quantile!r} (known: {', '.join(QUANTILES)})")
        if not hasattr(model, "spec_"):
            raise HwlatError("the interference model must be fitted")
        self.model, self.signature, self.space = model, signature, get_space(space)
        self.isolated = _isolated_metric(isolated)
        self.runtime, self.threads, self.quantile = runtime, int(threads), quantile
        self.name = name or f"{quantile}_ms_under_{signature.workload}"

    def slowdowns(self, archs: Sequence[str]) -> pd.DataFrame:
        """Predicted slowdowns (columns TARGETS) of each arch beside the workload."""
        isolated = self.isolated(archs)
        if not np.all(np.isfinite(isolated) & (isolated > 0)):
            raise HwlatError("isolated latencies must be finite and positive (ms)")
        recordings = len(self.signature.windows)
        log = np.log(self.model.predict(self._scenarios(list(archs), isolated)).to_numpy())
        return pd.DataFrame(np.exp(log.reshape(len(archs), recordings, -1).mean(axis=1)), columns=list(TARGETS))

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        """Predicted `quantile` latency in ms of each arch beside the workload."""
        return self.isolated(archs) * self.slowdowns(archs)[QUANTILES[self.quantile]].to_numpy()

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        return self.predict(archs)

    def describe(self) -> dict:
        return {**super().describe(), "workload": self.signature.workload, "quantile": self.quantile,
                "model": self.model.kind, "recordings": len(self.signature.windows),
                "placement": self.signature.placement, "time_slice_ms": self.signature.time_slice_ms,
                "pressure": dict(self.signature.pressure).get(self.threads) is not None,
                "isolated": self.isolated.describe(), "runtime": self.runtime, "threads": self.threads}

    def _scenarios(self, archs: list[str], isolated: np.ndarray) -> InterferenceData:
        """One row per (arch, recording of the signature), in that order."""
        signature, space = self.signature, self.space
        corunners = json.dumps(list(signature.corunners))
        kinds = [c.get("kind", "") for c in signature.corunners]
        rows = [{"scenario_id": f"{i}.{k}", "workload": signature.workload, "target": f"{space.name}:{arch}",
                 "target_runtime": self.runtime, "target_threads": self.threads,
                 "target_flops": float(space.flops(arch)), "target_params": float(space.params(arch)),
                 "corunners": corunners, "n_corunner_procs": len(signature.corunners),
                 "isolated_median_ms": float(isolated[i]), "n_cores": signature.n_cores, "kinds": kinds,
                 "placement": signature.placement, "time_slice_ms": signature.time_slice_ms,
                 **dict(zip(PRESSURE_COLUMNS, dict(signature.pressure).get(self.threads, ())))}
                for i, arch in enumerate(archs) for k in range(len(signature.windows))]
        return InterferenceData(pd.DataFrame(rows), signature.metric_names, signature.windows * len(archs))


def _pressure_by_threads(rows: pd.DataFrame) -> tuple[tuple[int, tuple[float, ...]], ...]:
    """The measured pressure of a workload's recordings per target thread count (those that have it)."""
    if not set(PRESSURE_COLUMNS) <= set(rows.columns):
        return ()
    values = (rows[["target_threads", *PRESSURE_COLUMNS]].apply(pd.to_numeric, errors="coerce")
              .dropna(how="all", subset=list(PRESSURE_COLUMNS)))
    return tuple((int(threads), tuple(float(v) for v in group[list(PRESSURE_COLUMNS)].iloc[0]))
                 for threads, group in values.groupby("target_threads"))


def _isolated_metric(isolated) -> Metric:
    """Isolated latency as a search metric: a Metric as is, an adapted predictor or an arch -> ms mapping wrapped."""
    if isinstance(isolated, Metric):
        return isolated
    if isinstance(isolated, Mapping):
        return TableMetric("isolated_ms", isolated, "min", costly=False, source="table")
    if hasattr(isolated, "predict") and hasattr(isolated, "samples_"):
        return PredictedLatency(isolated, name="isolated_ms")
    raise HwlatError("isolated latency must be an adapted predictor, a search Metric or a mapping arch -> ms")

