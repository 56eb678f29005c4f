"""Grouped cross-validation of interference models: workloads (or targets) of a test fold are never trained on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from hwlat._errors import HwlatError
from hwlat.interference._features import TARGETS, InterferenceData
from hwlat.interference._model import InterferenceModel

#: what a split holds out, by the scenario column that names the unit
SPLITS = {"workload": "workload", "target": "target"}


def mae_percent(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute error in percent of the measured value: mean(|predicted - measured| / measured) * 100."""
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(predicted - measured) / measured) * 100)


@dataclass(frozen=True)
class CrossValidation:
    """Per-fold errors (`folds`) and every held-out prediction (`predictions`) of one model under one split."""

    model: str
    split: str
    folds: pd.DataFrame
    predictions: pd.DataFrame

    def mae(self, target: str = "slowdown") -> float:
        """MAE % of `target`, mean over folds."""
        return float(self.folds[f"mae_{target}"].mean())

    def pooled_mae(self, target: str = "slowdown") -> float:
        """MAE % of `target` over all held-out scenarios at once."""
        return mae_percent(self.predictions[f"pred_{target}"], self.predictions[target])

    def summary(self) -> dict:
        """JSON-ready figures per target: MAE % (fold mean and pooled), the median absolute % error (pooled) and the
        per-fold MAE; fit seconds."""
        return {"model": self.model, "split": self.split, "folds": len(self.folds),
                "scenarios": len(self.predictions),
                **{f"mae_{t}": self.mae(t) for t in TARGETS}, **{f"pooled_mae_{t}": self.pooled_mae(t) for t in TARGETS},
                **{f"median_ape_{t}": float(np.median(np.abs(self.predictions[f"pred_{t}"] / self.predictions[t] - 1))
                                            * 100) for t in TARGETS},
                **{f"fold_mae_{t}": self.folds[f"mae_{t}"].round(4).tolist() for t in TARGETS},
                "fit_s": float(self.folds["fit_s"].sum())}


def cross_validate(model: InterferenceModel, data: InterferenceData, split: str = "workload", folds: int = 5,
                   seed: int = 0, progress: Callable[[int, int], None] | None = None,
                   grid: Sequence[dict] = (), inner_folds: int = 3, tune_params: dict | None = None,
                   extra_train: InterferenceData | None = None) -> CrossValidation:
    """Grouped K-fold: each fold holds out whole workloads (split="workload") or targets (split="target").

    A fresh clone of `model` is fitted per fold; a model with `validation_groups` validates internally on the
    same kind of unit, inside the training folds. With a `grid` of settings, each fold first picks the setting
    by `tune` on its training scenarios alone (nested CV; `tune_params` override settings during that search
    only, e.g. fewer ensemble members). `extra_train` (another recording, e.g. from another host) joins every
    training fold, less its scenarios of the fold's held-out workloads or targets; test folds hold `data` only.
    `progress(done, total)` is called after each fold.
    """
    if split not in SPLITS:
        raise HwlatError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    groups = data.scenarios[SPLITS[split]].astype(str).to_numpy()
    count = min(folds, len(set(groups)))
    if count < 2:
        raise HwlatError(f"leave-{split}-out needs at least 2 distinct {split}s, the data has {len(set(groups))}")
    rows, predictions = [], []
    splitter = GroupKFold(n_splits=count, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(data.scenarios, groups=groups)):
        estimator = _for_split(model, split)
        start = time.perf_counter()
        training = data.subset(train)
        if extra_train is not None:
            extra_groups = extra_train.scenarios[SPLITS[split]].astype(str).to_numpy()
            training = training.concat(extra_train.subset(np.flatnonzero(~np.isin(extra_groups, groups[test]))))
        chosen = {}
        if grid:
            chosen = tune(estimator, training, grid, split, inner_folds, seed, tune_params)[1]
            estimator.set_params(**chosen)
        estimator.fit(training)
        fit_s = time.perf_counter() - start
        errors, held_out = _scored(estimator, data.subset(test), fold)
        rows.append({"fold": fold, "train_scenarios": len(training), "test_scenarios": len(test),
                     f"test_{split}s": len(set(groups[test])), **errors,
                     "fit_s": fit_s, **({"chosen": json.dumps(chosen)} if grid else {})})
        predictions.append(held_out)
        if progress is not None:
            progress(fold + 1, count)
    return CrossValidation(model.kind, split, pd.DataFrame(rows), pd.concat(predictions, ignore_index=True))


def evaluate_on(model: InterferenceModel, train: InterferenceData, test: InterferenceData) -> CrossValidation:
    """Fit a fresh clone of `model` on every scenario of `train` and score it on every scenario of `test`, another
    recording (a new day, a changed machine): one fold, split "dataset"."""
    estimator = clone(model)
    start = time.perf_counter()
    estimator.fit(train)
    fit_s = time.perf_counter() - start
    errors, predictions = _scored(estimator, test, 0)
    folds = pd.DataFrame([{"fold": 0, "train_scenarios": len(train), "test_scenarios": len(test), **errors,
                           "fit_s": fit_s}])
    return CrossValidation(model.kind, "dataset", folds, predictions)


def _scored(estimator: InterferenceModel, test: InterferenceData, fold: int) -> tuple[dict, pd.DataFrame]:
    """MAE % per target of a fitted model on `test`, and its predictions beside the measured values."""
    measured = test.targets()
    predicted = estimator.predict(test).to_numpy()
    errors = {f"mae_{t}": mae_percent(predicted[:, j], measured[:, j]) for j, t in enumerate(TARGETS)}
    predictions = test.scenarios[["scenario_id", "workload", "target"]].reset_index(drop=True).assign(
        fold=fold, **{t: measured[:, j] for j, t in enumerate(TARGETS)},
        **{f"pred_{t}": predicted[:, j] for j, t in enumerate(TARGETS)})
    return errors, predictions


def tune(model: InterferenceModel, data: InterferenceData, grid: Sequence[dict], split: str = "workload",
         folds: int = 3, seed: int = 0, tune_params: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Grouped-CV MAE % of the median slowdown on `data` for each setting of `grid`, and the best setting.

    Only `data` is used, so called on a training fold it chooses without seeing that fold's test scenarios.
    """
    if not grid:
        raise HwlatError("tuning needs at least one candidate setting")
    rows = []
    for params in grid:
        candidate = clone(model).set_params(**params, **(tune_params or {}))
        rows.append({**params, "mae_slowdown": cross_validate(candidate, data, split, folds, seed).mae()})
    scores = pd.DataFrame(rows)
    return scores, dict(grid[int(scores["mae_slowdown"].to_numpy().argmin())])


def _for_split(model: InterferenceModel, split: str) -> InterferenceModel:
    """A fresh clone of `model` whose inner validation (if it has one) holds out the split's unit."""
    estimator = clone(model)
    if "validation_groups" in estimator.get_params():
        estimator.set_params(validation_groups=SPLITS[split])
    return estimator
