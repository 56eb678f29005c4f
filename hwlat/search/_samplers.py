"""Search strategies by name, each an Optuna sampler so all share storages and parallel workers."""

from __future__ import annotations

import optuna

from hwlat._errors import HwlatError
from hwlat.search._evolution import AgingEvolutionSampler
from hwlat.search._objective import ArchObjective

#: strategy name -> what it is
STRATEGIES = {
    "evolution": "aging (regularized) evolution, hwlat's own sampler: unique, valid, a-priori feasible candidates",
    "nsga2": "Optuna's NSGA-II (constraints through trial.set_constraint)",
    "tpe": "Optuna's multivariate TPE with constraints",
    "random": "Optuna's random sampler",
}


def make_sampler(strategy: str, objective: ArchObjective, seed: int | None = None,
                 population_size: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler of `strategy` for `objective`'s space; HwlatError lists the strategies when it is unknown."""
    if strategy == "evolution":
        population = population_size or 40
        return AgingEvolutionSampler(population, max(2, population // 4), search_space=objective.choices,
                                     is_valid=objective.is_valid, seed=seed)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population_size or 24, seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise HwlatError(f"unknown search strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
