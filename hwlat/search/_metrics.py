"""What a search scores an architecture by: table lookups, predicted latency, the space's counts, user callables."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError
from hwlat._home import shared_data
from hwlat.reports import Objective
from hwlat.spaces import get_space

#: NATS-Bench (topology) accuracy columns by short name
NATS_BENCH_COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
                      "imagenet16": "ImageNetTestAccuracy200Epochs"}


class Metric(abc.ABC):
    """A named number per architecture, to minimise or maximise.

    `costly` metrics (accuracy from training or a benchmark table) are what a search budget counts: a search
    evaluates the cheap ones first and skips the costly ones for architectures a hard constraint rejects.
    """

    name: str
    goal: str
    costly: bool = False

    @abc.abstractmethod
    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        """Values of canonical `archs`, as floats."""

    @property
    def objective(self) -> Objective:
        """This metric as a report objective."""
        return Objective(self.name, self.goal)

    def describe(self) -> dict:
        """JSON-ready description written into a search's settings."""
        return {"name": self.name, "goal": self.goal, "kind": type(self).__name__}


class TableMetric(Metric):
    """Values looked up by canonical arch string; an arch missing from the table is an error naming it."""

    def __init__(self, name: str, values: Mapping[str, float], goal: str = "max", *, costly: bool = True,
                 source: str = "") -> None:
        self.name, self.goal, self.costly, self.source = name, goal, costly, source
        self.values = dict(values)

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        try:
            return np.array([self.values[a] for a in archs], dtype=float)
        except KeyError as error:
            raise HwlatError(f"metric {self.name!r}: no value for arch {error.args[0]!r}") from None

    def describe(self) -> dict:
        return {**super().describe(), "source": self.source, "entries": len(self.values)}


def nats_bench_accuracy(dataset: str = "cifar100", path: str | Path | None = None) -> TableMetric:
    """Test accuracy (%) after 200 epochs from NATS-Bench's table (default `$HWLAT_SHARED/data/nats-bench`)."""
    if dataset not in NATS_BENCH_COLUMNS:
        raise HwlatError(f"unknown accuracy objective {dataset!r} (known: {', '.join(NATS_BENCH_COLUMNS)})")
    path = Path(path) if path else shared_data() / "nats-bench" / "nats_bench.csv"
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise HwlatError(f"cannot read the NAS-Bench-201 accuracy table {path} ({error}); "
                         "give its path or set HWLAT_SHARED") from None
    return table_metric(table, "ArchitectureString", NATS_BENCH_COLUMNS[dataset], "nb201", name=dataset,
                        source=str(path))


def table_metric(table: pd.DataFrame, arch_column: str, value_column: str, space: str, *, name: str | None = None,
                 goal: str = "max", source: str = "") -> TableMetric:
    """A costly metric from two columns of `table` (archs are canonicalised); errors name a missing column."""
    missing = [c for c in (arch_column, value_column) if c not in table.columns]
    if missing:
        raise HwlatError(f"{source or 'table'}: no column {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(map(str, table.columns))})")
    canonical = get_space(space).canonical
    values = pd.to_numeric(table[value_column], errors="coerce")
    if values.isna().any():
        raise HwlatError(f"{source or 'table'}: column {value_column!r} holds missing or non-numeric values")
    return TableMetric(name or value_column, dict(zip(map(canonical, table[arch_column]), values)), goal,
                       source=source)


class LatencyLookup(TableMetric):
    """Measured latency (ms) of each arch on one device of a `LatencyDataset`: the truth a search is checked on."""

    def __init__(self, dataset, device: str, name: str = "latency_ms") -> None:
        latencies = dataset[device]
        super().__init__(name, {a: v for a, v in zip(dataset.archs, latencies) if np.isfinite(v)}, "min",
                         costly=False, source=f"{device} ({dataset.space})")
        self.device = device


class PredictedLatency(Metric):
    """Latency (ms) predicted by an adapted predictor; cheap, so constraints on it reject before costly metrics."""

    goal = "min"

    def __init__(self, predictor, name: str = "latency_ms", device: str = "") -> None:
        self.predictor, self.name, self.device = predictor, name, device

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        return np.asarray(self.predictor.predict(list(archs)), dtype=float)

    def describe(self) -> dict:
        samples = self.predictor.samples_
        return {**super().describe(), "device": self.device, "predictor": self.predictor.kind,
                "trained_on": list(self.predictor.devices_), "target_samples": len(samples[0]) if samples else 0}


class SpaceCount(Metric):
    """The space's parameter count ("params") or FLOPs ("flops") of each architecture, to minimise."""

    goal = "min"

    def __init__(self, space: str, count: str) -> None:
        if count not in ("params", "flops"):
            raise HwlatError(f"space count must be 'params' or 'flops', got {count!r}")
        self.name, self.space = count, get_space(space)

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        count = getattr(self.space, self.name)
        return np.array([count(a) for a in archs], dtype=float)


class FunctionMetric(Metric):
    """A user callable `fn(arch) -> float` (module-level, so worker processes can import it)."""

    def __init__(self, name: str, fn: Callable[[str], float], goal: str = "max", *, costly: bool = True) -> None:
        self.name, self.fn, self.goal, self.costly = name, fn, goal, costly

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        return np.array([float(self.fn(a)) for a in archs], dtype=float)


class MnasReward(Metric):
    """MnasNet's soft-constrained reward ACC * (LAT / T) ** w, w = alpha if LAT <= T else beta (Tan et al. 2019).

    alpha = beta = -0.07 is the paper's soft constraint (2x latency costs ~5 % accuracy); alpha = 0, beta = -1
    makes it hard.
    """

    goal = "max"

    def __init__(self, accuracy: Metric, latency: Metric, target: float, alpha: float = -0.07,
                 beta: float = -0.07) -> None:
        if not target > 0:
            raise HwlatError(f"MnasNet reward target latency must be positive, got {target}")
        self.accuracy, self.latency, self.target, self.alpha, self.beta = accuracy, latency, target, alpha, beta
        self.name, self.costly = "reward", accuracy.costly or latency.costly

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        accuracy, latency = self.accuracy(archs), self.latency(archs)
        return accuracy * (latency / self.target) ** np.where(latency <= self.target, self.alpha, self.beta)

    def describe(self) -> dict:
        return {**super().describe(), "accuracy": self.accuracy.name, "latency": self.latency.name,
                "target": self.target, "alpha": self.alpha, "beta": self.beta}


class Constraint:
    """Hard constraint `metric <= limit` (or `>=` for a metric to maximise), as Optuna's `trial.set_constraint`.

    `slack` widens the limit the search applies by that fraction (for a predicted metric: candidates the predictor
    puts slightly over budget stay in play); checks against the truth (`SearchResult.verify`) use `limit` itself.
    """

    def __init__(self, metric: Metric, limit: float, slack: float = 0.0) -> None:
        if not np.isfinite(limit):
            raise HwlatError(f"constraint on {metric.name!r}: limit must be a finite number, got {limit}")
        if metric.goal == "min" and limit <= 0:
            raise HwlatError(f"constraint on {metric.name!r}: budget must be positive, got {limit}")
        if not 0 <= slack < 1:
            raise HwlatError(f"constraint on {metric.name!r}: slack must be in [0, 1), got {slack}")
        self.metric, self.limit, self.slack = metric, float(limit), float(slack)

    @property
    def key(self) -> str:
        """Name of the constraint in the study and the results, e.g. ``latency_ms<=5``."""
        return f"{self.metric.name}{'<=' if self.metric.goal == 'min' else '>='}{self.limit:g}"

    def violation(self, value: float) -> float:
        """How far `value` breaks the search's (slack-widened) limit (<= 0 when it holds), in the metric's units."""
        if self.metric.goal == "min":
            return value - self.limit * (1 + self.slack)
        return self.limit * (1 - self.slack) - value

    def describe(self) -> dict:
        return {"metric": self.metric.name, "goal": self.metric.goal, "limit": self.limit, "slack": self.slack,
                "key": self.key}
