"""The time-slice mixture at the target's contended latency: a few fitted parameters, no trees, no window.

Beside a CPU-bound co-runner on its core, a target's median stays ~1x while an inference fits between two
preemptions and jumps to ~3x when it does not (`_features._time_slice`). Memory contention from the co-runners
lengthens the inference itself, so a target just under half a slice alone can cross it beside a memory-bandwidth
hog (data/interference-cpu-pinned-d: 0.39-slice ONNX Runtime cells flip to 3.65x beside membw-x2 only). This model
evaluates the mixture at the contended latency: the target's inference takes its isolated latency times
m = exp(s_target * (beta . pressure logs)), and each preemption adds the co-runners' slices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from hwlat._errors import HwlatError
from hwlat.interference._features import _TARGET_QUANTILES, QUANTILE_TARGETS, InterferenceData
from hwlat.interference._model import InterferenceModel

#: the probe kernels whose pressure can make up the contention (`kernels`; the refill with extras "refill")
KERNELS = ("stream", "gather", "compute")
#: a smoothed |x| (sqrt(x^2 + eps^2)) keeps the L1 loss differentiable for L-BFGS
_EPS = 0.01
#: the fitted step width stays within 0.002-0.2 of a slice
_LOG_WIDTH_BOUNDS = (float(np.log(0.002)), float(np.log(0.2)))


class ContendedSliceInterference(InterferenceModel):
    """The time-slice mixture evaluated at the target's latency under memory contention.

    `kernels` picks the probe pressures the contention is made of. A logistic step replaces the mixture's 0/1 step,
    its width (in fractions of a slice) fitted too: measured knife edges are not sharp. `ridge` pulls each target's
    log sensitivity towards 0 (sensitivity 1); a target not seen in training gets the median sensitivity of those
    seen. Fitted on the smoothed L1 of log-slowdowns over the three quantiles: first at the width `smoothing` from a
    few starting points (the loss has one step per scenario), then with the width free from the best of them. The
    mean slowdown follows without a step: m x (1 + competitors), each slice of contended work waiting for theirs."""

    kind = "contended-slice"

    def __init__(self, extras: tuple[str, ...] = ("slice", "pressure"), kernels: tuple[str, ...] = KERNELS,
                 smoothing: float = 0.05, ridge: float = 0.01) -> None:
        self.extras, self.kernels, self.smoothing, self.ridge = extras, kernels, smoothing, ridge

    def _pressure(self, data: InterferenceData) -> np.ndarray:
        """The pressure logs of `kernels` (and the refill) of each scenario (n x k; 0 where the dataset has none)."""
        unknown = set(self.kernels) - set(KERNELS)
        if unknown:
            raise HwlatError(f"contention kernels must be among {', '.join(KERNELS)}, "
                             f"got {', '.join(sorted(unknown))}")
        table = data.pressure()
        columns = [table[f"pressure_log_{kernel}"].to_numpy(float) for kernel in self.kernels]
        if "refill" in self.extras:  # NaN (no contention from it) where the pressure file predates the probe
            refill = (pd.to_numeric(data.scenarios["pressure_refill"], errors="coerce").to_numpy(float)
                      if "pressure_refill" in data.scenarios.columns else np.full(len(data), np.nan))
            columns.append(np.log(refill))
        return np.nan_to_num(np.column_stack(columns), nan=0.0) if columns else np.zeros((len(data), 0))

    def _log_slowdowns(self, beta: np.ndarray, log_sensitivity: np.ndarray, width: float, pressure: np.ndarray,
                       slices: pd.DataFrame) -> np.ndarray:
        """Log-slowdowns (n x len(TARGETS): the quantiles, then the mean) for contention weights `beta`, each
        scenario's log sensitivity and the step's `width`."""
        contention = np.exp(np.exp(log_sensitivity) * (pressure @ beta))
        ratio = slices["slice_ratio"].to_numpy(float) * contention
        whole = np.floor(ratio)
        step = expit(((ratio - whole)[:, None] - (1 - np.asarray(_TARGET_QUANTILES))) / width)
        wait = np.nan_to_num(slices["slice_wait_ratio"].to_numpy(float), nan=0.0, posinf=0.0)
        mean = contention + ratio * wait
        return np.log(np.column_stack([contention[:, None] + (whole[:, None] + step) * wait[:, None], mean]))

    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        if not (0 < self.smoothing and self.ridge >= 0):
            raise HwlatError(f"contended-slice needs smoothing > 0 and ridge >= 0, got {self.smoothing} and "
                             f"{self.ridge}")
        pressure, slices = self._pressure(data), data.time_slice()
        names, index = np.unique(data.scenarios["target"].astype(str).to_numpy(), return_inverse=True)
        k, quantiles = pressure.shape[1], len(QUANTILE_TARGETS)

        def loss(params: np.ndarray, log_width: float | None = None) -> float:
            beta, log_sensitivity = params[:k], params[k:k + len(names)]
            width = np.exp(params[-1] if log_width is None else log_width)
            # trial steps far from the optimum can overflow exp() or reach log(0) (a loss of inf or nan for that
            # step); silencing the warnings changes no value
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                error = (self._log_slowdowns(beta, log_sensitivity[index], width, pressure, slices)
                         - log_targets)[:, :quantiles]
            return float(np.mean(np.sqrt(error ** 2 + _EPS ** 2)) + self.ridge * np.mean(log_sensitivity ** 2))

        fixed = np.log(self.smoothing)
        starts = [np.concatenate([np.full(k, b), np.zeros(len(names))]) for b in (0.0, 0.5, 1.0, 2.0)]
        first = min((minimize(loss, start, args=(fixed,), method="L-BFGS-B") for start in starts),
                    key=lambda r: r.fun)
        bounds = [(None, None)] * (k + len(names)) + [_LOG_WIDTH_BOUNDS]
        best = minimize(loss, np.append(first.x, fixed), method="L-BFGS-B", bounds=bounds).x
        self.beta_, self.targets_, self.log_sensitivity_ = best[:k], names, best[k:-1]
        self.width_ = float(np.exp(best[-1]))

    def _predict(self, data: InterferenceData) -> np.ndarray:
        known = dict(zip(self.targets_, self.log_sensitivity_))
        unseen = float(np.median(self.log_sensitivity_))
        log_sensitivity = np.array([known.get(t, unseen) for t in data.scenarios["target"].astype(str)])
        return self._log_slowdowns(self.beta_, log_sensitivity, self.width_, self._pressure(data), data.time_slice())

    def _state(self) -> dict[str, np.ndarray]:
        return {"beta": self.beta_, "targets": self.targets_.astype(str), "log_sensitivity": self.log_sensitivity_,
                "width": np.array([self.width_])}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.beta_, self.targets_ = state["beta"], state["targets"].astype(str)
        self.log_sensitivity_, self.width_ = state["log_sensitivity"], float(state["width"][0])
