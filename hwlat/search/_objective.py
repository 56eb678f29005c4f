"""The Optuna objective of an architecture search: suggest a space's decisions, score the arch, set constraints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from hwlat._errors import HwlatError
from hwlat.search._metrics import Constraint, Metric
from hwlat.spaces import get_space

#: user attribute holding a trial's canonical architecture string
ARCH_ATTR = "arch"


class ArchObjective:
    """Scores one trial: cheap metrics first; a hard constraint on them rejects the arch (pruned) before costly ones.

    Values are cached per arch in this process, so a sampler that proposes an arch again costs no new query.
    Picklable (when its metrics are), so worker processes get their own copy.
    """

    def __init__(self, space: str, objectives: Sequence[Metric], constraints: Sequence[Constraint] = (),
                 extra: Sequence[Metric] = ()) -> None:
        self.space = get_space(space)
        self.objectives, self.constraints = tuple(objectives), tuple(constraints)
        metrics: dict[str, Metric] = {}
        for metric in (*objectives, *(c.metric for c in constraints), *extra):
            if metrics.setdefault(metric.name, metric) is not metric:
                raise HwlatError(f"two different metrics are both called {metric.name!r}")
        self.metrics = metrics
        self.cheap = [m for m in metrics.values() if not m.costly]
        self.costly = [m for m in metrics.values() if m.costly]
        try:
            self.choices = self.space.choices()
        except NotImplementedError as error:
            raise HwlatError(f"space {space!r} cannot be searched: {error}") from None
        self._cache: dict[str, dict[str, float]] = {}

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives."""
        return ["maximize" if m.goal == "max" else "minimize" for m in self.objectives]

    def arch_of(self, params: dict[str, Any]) -> str | None:
        """The canonical arch of sampled decisions, or None when the space rejects the combination."""
        try:
            return self.space.from_choices(params)
        except HwlatError:
            return None

    def is_valid(self, params: dict[str, Any]) -> bool:
        """Whether the decisions form a valid arch that every constraint on cheap metrics accepts."""
        arch = self.arch_of(params)
        if arch is None:
            return False
        values = self._values(arch, self.cheap)
        return all(c.violation(values[c.metric.name]) <= 0 for c in self.constraints if not c.metric.costly)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        params = {name: trial.suggest_categorical(name, options) for name, options in self.choices.items()}
        arch = self.arch_of(params)
        if arch is None:
            raise optuna.TrialPruned(f"invalid architecture {params}")
        trial.set_user_attr(ARCH_ATTR, arch)
        values = self._record(trial, arch, self.cheap)
        if any(c.violation(values[c.metric.name]) > 0 for c in self.constraints if not c.metric.costly):
            raise optuna.TrialPruned("rejected by a constraint before costly metrics")
        values.update(self._record(trial, arch, self.costly))
        return tuple(values[m.name] for m in self.objectives)

    def _record(self, trial: optuna.Trial, arch: str, metrics: list[Metric]) -> dict[str, float]:
        values = self._values(arch, metrics)
        for name, value in values.items():
            trial.set_user_attr(name, value)
        for constraint in self.constraints:
            if constraint.metric.name in values:
                trial.set_constraint(constraint.key, constraint.violation(values[constraint.metric.name]))
        return values

    def _values(self, arch: str, metrics: list[Metric]) -> dict[str, float]:
        known = self._cache.setdefault(arch, {})
        for metric in metrics:
            if metric.name not in known:
                known[metric.name] = float(metric([arch])[0])
        return {m.name: known[m.name] for m in metrics}
