"""The whole loop on one device: measure a few archs, adapt a predictor, search under a latency budget, check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from hwlat.search._metrics import Constraint, Metric, PredictedLatency
from hwlat.search._result import SearchResult
from hwlat.search._search import run_search
from hwlat.spaces import get_space


@dataclass
class DeviceSearch:
    """A latency-constrained search on one device, and what its truth says about the result.

    `front`: the feasible front (accuracy vs predicted latency) with ``true_latency_ms`` and a violation flag.
    `pick`: the most accurate candidate whose true latency meets the budget (None if none of the checked did).
    `measurements`: target latencies used (adaptation samples + front and pick checks).
    """

    result: SearchResult
    front: pd.DataFrame
    pick: pd.Series | None
    adapt_archs: list[str]
    measurements: int

    def report(self, title: str):
        """The Pareto report, with the true latency of front members and the pick in its settings."""
        pick = None if self.pick is None else {k: _plain(v) for k, v in self.pick.items()}
        report = self.result.report(title, {"target_measurements": self.measurements, "pick": pick})
        checked = self.front.set_index("arch")
        extra = [c for c in checked.columns if c.startswith(("true_", "violates_"))]
        report.points = report.points.join(checked[extra], on="arch")
        return report


def search_device(space: str, accuracy: Metric, truth: Metric, budget_ms: float, predictor, *, samples: int = 10,
                  strategy: str = "evolution", trials: int = 300, seed: int = 0, slack: float = 0.05,
                  checks: int = 5, storage: str | None = None, study_name: str | None = None, workers: int = 1,
                  device: str = "", progress: Callable[[int, int], None] | None = None) -> DeviceSearch:
    """Adapt the fitted `predictor` to `samples` archs measured by `truth`, search, then check the front.

    The search maximises `accuracy` and minimises predicted latency under predicted latency <= budget
    (widened by `slack`); the front's members are then measured by `truth`, and so are up to `checks` further
    candidates more accurate than the best front member truly within budget.
    """
    truth = _Recorded(truth)
    archs = get_space(space).sample(samples, seed=seed)
    predictor.adapt(archs, truth(archs))
    latency = PredictedLatency(predictor, device=device)
    result = run_search(space, [accuracy, latency], constraints=[Constraint(latency, budget_ms, slack)],
                        strategy=strategy, trials=trials, seed=seed, storage=storage, study_name=study_name,
                        workers=workers, progress=progress)
    front = result.verify(truth)
    return DeviceSearch(result, front, _pick(result, front, truth, checks), archs, len(truth.archs))


def _pick(result: SearchResult, front: pd.DataFrame, truth: Metric, checks: int) -> pd.Series | None:
    """The most accurate arch truly within budget among the front and up to `checks` more accurate candidates."""
    accuracy = result.objectives[0].column
    within = front[~front.filter(like="violates_").to_numpy(bool).any(axis=1)]
    floor = within[accuracy].max() if len(within) else -float("inf")
    feasible = result.evaluated[result.evaluated["feasible"]]
    better = feasible[(feasible[accuracy] > floor) & ~feasible["arch"].isin(front["arch"])]
    checked = result.verify(truth, better.sort_values(accuracy, ascending=False).head(checks))
    pool = pd.concat([within, checked[~checked.filter(like="violates_").to_numpy(bool).any(axis=1)]])
    return pool.loc[pool[accuracy].idxmax()] if len(pool) else None


class _Recorded(Metric):
    """`metric`, remembering every distinct arch it was asked about (the target measurements spent)."""

    def __init__(self, metric: Metric) -> None:
        self.metric, self.name, self.goal, self.costly = metric, metric.name, metric.goal, metric.costly
        self.archs: set[str] = set()

    def __call__(self, archs):
        self.archs.update(archs)
        return self.metric(archs)


def _plain(value):
    return value.item() if hasattr(value, "item") else value
