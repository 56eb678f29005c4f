"""Aging (regularized) evolution as an Optuna sampler for categorical architecture spaces."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import moocore
import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hwlat._errors import HwlatError

#: mutations tried from one parent before another tournament picks a new one
_TRIES_PER_PARENT = 20


class AgingEvolutionSampler(BaseSampler):
    """Regularized evolution (Real et al., AAAI 2019): tournament selection in an aging population, one-edit mutation.

    The population is the `population_size` most recently completed trials (the oldest ages out). Until it is
    full, candidates are drawn at random; afterwards `tournament_size` members are drawn, the best becomes the
    parent and one decision is changed to another option. Feasible trials beat infeasible ones (smaller total
    violation first), then lower Pareto rank among all completed trials wins (with one objective: the better
    value); ties are broken at random.
    `search_space` (name -> options) lets the first trial be sampled here too; `is_valid(params)` rejects
    invalid or a-priori infeasible candidates before they are evaluated; `unique` skips architectures the study
    already holds, so no evaluation is spent twice.
    """

    def __init__(self, population_size: int = 50, tournament_size: int = 10, *,
                 search_space: Mapping[str, Sequence[Any]] | None = None,
                 is_valid: Callable[[dict[str, Any]], bool] | None = None, unique: bool = True,
                 max_attempts: int = 1000, seed: int | None = None) -> None:
        if not 1 <= tournament_size <= population_size:
            raise HwlatError(f"tournament size must be in 1..population size ({population_size}), "
                             f"got {tournament_size}")
        self.population_size, self.tournament_size = population_size, tournament_size
        self.search_space = {name: CategoricalDistribution(tuple(options))
                             for name, options in (search_space or {}).items()}
        self.is_valid, self.unique, self.max_attempts = is_valid, unique, max_attempts
        self._rng = np.random.default_rng(seed)
        self._fallback = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self.search_space:
            return dict(self.search_space)
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        space = optuna.search_space.intersection_search_space(completed)
        return {name: d for name, d in space.items() if isinstance(d, CategoricalDistribution)}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False)
        seen = {_key(t.params, search_space) for t in trials if t.number != trial.number} if self.unique else set()
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        population = completed[-self.population_size:]
        if len(population) < self.population_size:
            population = []  # random draws until the population is full
        return self._propose(study, completed, population, search_space, seen)

    def _propose(self, study: optuna.Study, completed: list[FrozenTrial], population: list[FrozenTrial],
                 search_space: dict[str, BaseDistribution], seen: set[tuple]) -> dict[str, Any]:
        """A new valid child of a tournament winner (a random draw while `population` is empty)."""
        for attempt in range(self.max_attempts):
            if population and attempt % _TRIES_PER_PARENT == 0:  # a parent whose neighbours are all seen is replaced
                parent = self._select(study, completed, population)
            mutate = population and attempt < self.max_attempts // 2  # then fall back to random draws
            child = self._mutate(parent.params, search_space) if mutate else self._draw(search_space)
            if _key(child, search_space) not in seen and (self.is_valid is None or self.is_valid(child)):
                return child
        raise HwlatError(f"aging evolution found no new valid architecture in {self.max_attempts} attempts "
                         "(space exhausted, or constraints reject nearly everything)")

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def _draw(self, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {name: d.choices[self._rng.integers(len(d.choices))] for name, d in search_space.items()}

    def _mutate(self, params: dict[str, Any], search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """`params` with one decision that has several options changed to a different option."""
        child = {name: params.get(name, d.choices[0]) for name, d in search_space.items()}
        names = [name for name, d in search_space.items() if len(d.choices) > 1]
        name = names[self._rng.integers(len(names))]
        others = [c for c in search_space[name].choices if c != child[name]]
        child[name] = others[self._rng.integers(len(others))]
        return child

    def _select(self, study: optuna.Study, completed: list[FrozenTrial],
                population: list[FrozenTrial]) -> FrozenTrial:
        """Tournament winner among `tournament_size` population members drawn without replacement.

        Members are ranked by total constraint violation, then by Pareto rank among all completed trials (with
        one objective: by value); ties are broken at random.
        """
        rank = dict(zip((t.number for t in completed), pareto_ranks(study, completed)))
        picks = self._rng.choice(len(population), size=self.tournament_size, replace=False)
        keys = [(sum(max(0.0, c) for c in population[i].constraints.values()), rank[population[i].number])
                for i in picks]
        best = min(keys)
        winners = [i for i, key in zip(picks, keys) if key == best]
        return population[winners[self._rng.integers(len(winners))]]


def pareto_ranks(study: optuna.Study, trials: list[FrozenTrial]) -> np.ndarray:
    """Non-domination rank of each trial (1 = on the front); with one objective, the rank of its value."""
    signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions])
    values = np.array([t.values for t in trials], dtype=float).reshape(len(trials), -1) * signs
    if values.shape[1] == 1:
        return np.argsort(np.argsort(values[:, 0], kind="stable"), kind="stable") + 1
    return moocore.pareto_rank(values)


def _key(params: dict[str, Any], search_space: dict[str, BaseDistribution]) -> tuple:
    return tuple(params.get(name) for name in search_space)
