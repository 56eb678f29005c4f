"""What a search returns: every trial as a DataFrame, the feasible Pareto front, checks against the truth, a report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from hwlat._errors import HwlatError
from hwlat.reports import Objective, ParetoReport, pareto_front
from hwlat.search._metrics import Metric
from hwlat.search._objective import ARCH_ATTR


@dataclass
class SearchResult:
    """All trials (one row each, with metric values, constraint violations and `feasible`) and the settings.

    `objectives` are the plotted objectives: the searched ones, then the metrics the constraints bound, so a
    single-objective constrained search still shows its accuracy-latency trade-off.
    """

    trials: pd.DataFrame
    objectives: tuple[Objective, ...]
    constraints: dict[str, tuple[str, float, str]]  # key -> (metric, limit, goal)
    settings: dict
    wall_s: float = 0.0
    study: optuna.Study | None = field(default=None, repr=False)

    @classmethod
    def from_study(cls, study: optuna.Study, wall_s: float = 0.0) -> SearchResult:
        """Collect a study's trials; its settings (written by `run_search`) name the metrics and constraints."""
        settings = study.user_attrs.get("settings")
        if settings is None:
            raise HwlatError(f"study {study.study_name!r} was not created by hwlat search (no settings)")
        metrics = {m["name"]: m["goal"] for m in (*settings["objectives"], *settings["extra_metrics"])}
        for constraint in settings["constraints"]:
            metrics.setdefault(constraint["metric"], constraint["goal"])
        keys = [c["key"] for c in settings["constraints"]]
        rows = []
        for trial in study.get_trials(deepcopy=False):
            row = {"number": trial.number, "state": trial.state.name, ARCH_ATTR: trial.user_attrs.get(ARCH_ATTR)}
            row.update({name: trial.user_attrs.get(name, np.nan) for name in metrics})
            violations = trial.constraints
            row.update({key: violations.get(key, np.nan) for key in keys})
            row["feasible"] = trial.state == TrialState.COMPLETE and all(violations.get(k, 1) <= 0 for k in keys)
            rows.append(row)
        plotted = [m["name"] for m in settings["objectives"]]
        plotted += [c["metric"] for c in settings["constraints"] if c["metric"] not in plotted]
        constraints = {c["key"]: (c["metric"], c["limit"], c["goal"]) for c in settings["constraints"]}
        return cls(pd.DataFrame(rows, columns=["number", "state", ARCH_ATTR, *metrics, *keys, "feasible"]),
                   tuple(Objective(name, metrics[name]) for name in plotted), constraints, settings, wall_s, study)

    @property
    def evaluated(self) -> pd.DataFrame:
        """Completed trials, one row per architecture (the first trial that scored it)."""
        done = self.trials[self.trials["state"] == TrialState.COMPLETE.name]
        return done.drop_duplicates(ARCH_ATTR).reset_index(drop=True)

    @property
    def queries(self) -> int:
        """Distinct architectures whose costly metrics were evaluated (what an accuracy budget counts)."""
        return len(self.evaluated)

    @property
    def front(self) -> pd.DataFrame:
        """Feasible evaluated architectures that no other feasible one dominates on the plotted objectives."""
        feasible = self.evaluated[self.evaluated["feasible"]]
        if len(self.objectives) < 2 or feasible.empty:
            return feasible
        first = self.objectives[0]
        front = feasible[pareto_front(feasible, self.objectives)]
        return front.sort_values(first.column, ascending=first.goal == "min").reset_index(drop=True)

    def best(self) -> pd.Series:
        """The feasible architecture best in the first objective; HwlatError when nothing feasible was found."""
        feasible = self.evaluated[self.evaluated["feasible"]]
        if feasible.empty:
            raise HwlatError("the search found no feasible architecture")
        first = self.objectives[0]
        column = feasible[first.column]
        return feasible.loc[column.idxmax() if first.goal == "max" else column.idxmin()]

    def verify(self, truth: Metric, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """`rows` (default: the front) with ``true_<metric>`` from `truth` and, per constraint on that metric,
        ``violates_<key>`` when the true value breaks it (a predicted latency that hid a violation)."""
        rows = (self.front if rows is None else rows).copy()
        rows[f"true_{truth.name}"] = truth(rows[ARCH_ATTR].tolist()) if len(rows) else []
        for key, (metric, limit, goal) in self.constraints.items():
            if metric == truth.name:
                true = rows[f"true_{truth.name}"]
                rows[f"violates_{key}"] = true > limit if goal == "min" else true < limit
        return rows

    def verified_best(self, truth: Metric, checks: int = 10) -> tuple[pd.Series | None, int]:
        """The feasible arch best in the first objective whose `truth` also meets the constraints on it.

        Candidates are checked in order of the first objective, at most `checks` of them (each check is one
        measurement on the target); returns the pick (None if every checked one violates) and the checks used.
        """
        feasible = self.evaluated[self.evaluated["feasible"]]
        first = self.objectives[0]
        ordered = feasible.sort_values(first.column, ascending=first.goal == "min").head(checks)
        for used, (_, row) in enumerate(ordered.iterrows(), start=1):
            checked = self.verify(truth, row.to_frame().T)
            if not checked.filter(like="violates_").to_numpy(bool).any():
                return checked.iloc[0], used
        return None, len(ordered)

    def report(self, title: str = "hwlat search", extra_settings: dict | None = None) -> ParetoReport:
        """A Pareto report of the feasible evaluated architectures on the plotted objectives."""
        if len(self.objectives) < 2:
            raise HwlatError("a report needs two objectives: add a second objective or a constraint")
        points = self.evaluated[self.evaluated["feasible"]].drop(columns=["state", "feasible"])
        if points.empty:
            raise HwlatError("nothing to report: the search found no feasible architecture")
        return ParetoReport(title, points.reset_index(drop=True), self.objectives, label=ARCH_ATTR,
                            settings={**self.settings, "queries": self.queries, **(extra_settings or {})})

    def summary(self) -> dict:
        """Counts of the run, JSON-ready."""
        states = self.trials["state"].value_counts().to_dict()
        return {"trials": len(self.trials), "completed": int(states.get("COMPLETE", 0)),
                "rejected": int(states.get("PRUNED", 0)), "failed": int(states.get("FAIL", 0)),
                "queries": self.queries, "feasible": int(self.evaluated["feasible"].sum()),
                "front": len(self.front), "wall_s": round(self.wall_s, 3)}
