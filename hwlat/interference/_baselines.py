"""Baselines: no interference, the scheduler's time slicing, and linear / gradient-boosting regressions on window
aggregates + descriptors."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV

from hwlat._errors import HwlatError
from hwlat.interference._contended import ContendedSliceInterference
from hwlat.interference._features import TARGETS, InterferenceData, mean_std
from hwlat.interference._model import InterferenceModel


#: what a learnt model predicts: the log-slowdown itself ("none") or its difference from a physical model's
BASES = ("none", "slice")
#: gradient boosting can also correct a physical model fitted first on its training scenarios
#: (`ContendedSliceInterference`)
FITTED_BASE = "contended"


def base_log_slowdowns(data: InterferenceData, base: str) -> np.ndarray:
    """The log-slowdowns (n x len(TARGETS)) a model with `base` learns to correct: zero, or the time-slice
    mixture's (`TimeSliceInterference`; no mixture: 0); HwlatError for a base not in BASES."""
    if base not in BASES:
        raise HwlatError(f"base must be one of {', '.join(BASES)}, got {base!r}")
    if base == "slice":
        return np.nan_to_num(data.slice_log_slowdowns(), nan=0.0)
    return np.zeros((len(data), len(TARGETS)))


class NoInterference(InterferenceModel):
    """Co-runners change nothing: slowdown 1, and the tail and mean slowdowns are the isolated run's own."""

    kind = "none"

    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        pass

    def _predict(self, data: InterferenceData) -> np.ndarray:
        table = data.scenarios
        out = np.zeros((len(table), len(TARGETS)))
        for j, column in ((1, "isolated_p90_ms"), (2, "isolated_p99_ms"), (3, "isolated_mean_ms")):
            if column in table.columns:
                ratio = np.log(table[column].to_numpy(float) / table["isolated_median_ms"].to_numpy(float))
                out[:, j] = np.where(np.isfinite(ratio), ratio, 0.0)
        return out


class TimeSliceInterference(InterferenceModel):
    """Nothing learnt: the latency quantiles of inferences cut by the scheduler's time slices when CPU-bound
    co-runners share the target's core (`InterferenceData.time_slice`); slowdown 1 for a target with its cores to
    itself. Ignores memory contention; the physical baseline the learnt models can start from (`base="slice"`)."""

    kind = "slice"

    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        pass

    def _predict(self, data: InterferenceData) -> np.ndarray:
        return base_log_slowdowns(data, "slice")


class _AggregateRegression(InterferenceModel):
    """A regressor on the window aggregates (mean/std/min/max/p10/p50/p90 per metric) and the descriptors (with the
    EXTRAS groups named by `extras`).

    Missing values take the training mean; columns are standardised with training statistics.
    """

    def _raw_design(self, data: InterferenceData) -> np.ndarray:
        return np.hstack([self.spec_.aggregates(data), self.spec_.descriptors(data)])

    def _design(self, data: InterferenceData, raw: np.ndarray | None = None) -> np.ndarray:
        values = ((self._raw_design(data) if raw is None else raw) - self.center_) / self.scale_
        return np.where(np.isfinite(values), values, 0.0)

    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        raw = self._raw_design(data)
        self.center_, self.scale_ = mean_std(raw)
        self._fit_design(self._design(data, raw), log_targets)

    def _state(self) -> dict[str, np.ndarray]:
        return {"center": self.center_, "scale": self.scale_}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.center_, self.scale_ = state["center"], state["scale"]


class LinearInterference(_AggregateRegression):
    """Ridge regression of log-slowdowns; the penalty per target is chosen by leave-one-out on the training data."""

    kind = "linear"

    def __init__(self, alphas: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0),
                 extras: tuple[str, ...] = ("load", "threads")) -> None:
        self.alphas, self.extras = alphas, extras

    def _fit_design(self, design: np.ndarray, log_targets: np.ndarray) -> None:
        ridge = RidgeCV(alphas=self.alphas, alpha_per_target=True).fit(design, log_targets)
        self.coef_, self.intercept_ = ridge.coef_, ridge.intercept_

    def _predict(self, data: InterferenceData) -> np.ndarray:
        return self._design(data) @ self.coef_.T + self.intercept_

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "coef": self.coef_, "intercept": self.intercept_}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        super()._restore(state)
        self.coef_, self.intercept_ = state["coef"], state["intercept"]


class BoostedInterference(_AggregateRegression):
    """scikit-learn gradient boosting (its defaults), one per log-slowdown target. `loss` is scikit-learn's
    (`"absolute_error"`: the L1 variant) or `"relative"`: L1 on the slowdown itself weighted by 1 / measured, i.e.
    the relative error the evaluation reports. `base="slice"` boosts the correction to the time-slice mixture
    (`TimeSliceInterference`): the trees learn what preemption alone does not explain (memory contention, sleeping
    co-runners) instead of the preemption steps themselves; `base="contended"` the correction to the mixture at the
    contended latency (`ContendedSliceInterference`, fitted first on the same scenarios, with the refill if `extras`
    has it).

    Trees have no array form here, so a saved model keeps its training design and refits (deterministically).
    """

    kind = "gb"

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 loss: str = "squared_error", extras: tuple[str, ...] = ("load", "threads"),
                 random_state: int = 0, base: str = "none") -> None:
        self.n_estimators, self.max_depth, self.extras = n_estimators, max_depth, extras
        self.learning_rate, self.loss, self.random_state, self.base = learning_rate, loss, random_state, base

    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        if self.base not in (*BASES, FITTED_BASE):
            raise HwlatError(f"base must be one of {', '.join((*BASES, FITTED_BASE))}, got {self.base!r}")
        self.base_model_ = self._new_base().fit(data) if self.base == FITTED_BASE else None
        super()._fit(data, log_targets - self._base_log_slowdowns(data))

    def _new_base(self) -> ContendedSliceInterference:
        refill = ("refill",) if "refill" in self.extras else ()
        return ContendedSliceInterference(extras=("slice", "pressure", *refill))

    def _base_log_slowdowns(self, data: InterferenceData) -> np.ndarray:
        if self.base == FITTED_BASE:
            return self.base_model_._predict(data)
        return base_log_slowdowns(data, self.base)

    def _fit_design(self, design: np.ndarray, log_targets: np.ndarray) -> None:
        self.design_, self.log_targets_ = design, log_targets
        relative = self.loss == "relative"
        targets = np.exp(log_targets) if relative else log_targets
        self.models_ = [GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                                  learning_rate=self.learning_rate,
                                                  loss="absolute_error" if relative else self.loss,
                                                  random_state=self.random_state)
                        .fit(design, targets[:, j], sample_weight=1 / targets[:, j] if relative else None)
                        for j in range(log_targets.shape[1])]

    def _predict(self, data: InterferenceData) -> np.ndarray:
        design = self._design(data)
        predicted = np.column_stack([m.predict(design) for m in self.models_])
        correction = np.log(np.clip(predicted, 1e-3, None)) if self.loss == "relative" else predicted
        return correction + self._base_log_slowdowns(data)

    def _state(self) -> dict[str, np.ndarray]:
        base = {f"base.{k}": v for k, v in self.base_model_._state().items()} if self.base_model_ else {}
        return {**super()._state(), "design": self.design_, "log_targets": self.log_targets_, **base}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        super()._restore(state)
        self._fit_design(state["design"], state["log_targets"])
        self.base_model_ = self._new_base() if self.base == FITTED_BASE else None
        if self.base_model_:
            self.base_model_._restore({k[5:]: v for k, v in state.items() if k.startswith("base.")})
