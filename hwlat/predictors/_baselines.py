"""Baselines that learn from the target's samples only: a FLOPs/params proxy, a lookup table, GB/MLP regressors."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.neural_network import MLPRegressor

from hwlat._errors import HwlatError
from hwlat.predictors._base import BasePredictor
from hwlat.spaces import get_space

_PROXIES = ("flops", "params")
#: target-only regressors by name, each made from a random seed
_MODELS = {"gb": lambda seed: GradientBoostingRegressor(random_state=seed),
           "mlp": lambda seed: MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=2000, random_state=seed),
           "lut": lambda seed: RidgeCV(alphas=np.logspace(-3, 3, 13))}


class ProxyPredictor(BasePredictor):
    """Latency as a linear function of FLOPs or parameter count, fitted on the target's samples."""

    kind = "proxy"

    def __init__(self, proxy: str = "flops") -> None:
        self.proxy = proxy

    def _values(self, archs: list[str]) -> np.ndarray:
        if self.proxy not in _PROXIES:
            raise HwlatError(f"proxy {self.proxy!r} unknown (expected one of {', '.join(_PROXIES)})")
        count = getattr(get_space(self.space_), self.proxy)
        return np.array([[count(a)] for a in archs], dtype=float)

    def _adapt(self, archs: list[str], latencies: np.ndarray) -> None:
        self.model_ = LinearRegression().fit(self._values(archs), latencies)

    def _predict(self, archs: list[str], return_std: bool) -> tuple[np.ndarray, None]:
        return self.model_.predict(self._values(archs)), None


class TargetOnlyPredictor(BasePredictor):
    """A regressor on the arch encoding trained on the target's few samples alone.

    `model`: "gb" (gradient boosting), "mlp", or "lut": an additive cost per choice and position (ridge on the
    one-hot encoding), i.e. a per-op lookup table learnt from whole-network latencies instead of per-op runs.
    """

    kind = "target-only"

    def __init__(self, model: str = "gb", encoding: str = "onehot", random_state: int = 0) -> None:
        self.model = model
        self.encoding = encoding
        self.random_state = random_state

    def _adapt(self, archs: list[str], latencies: np.ndarray) -> None:
        if self.model not in _MODELS:
            raise HwlatError(f"target-only model {self.model!r} unknown (expected one of {', '.join(_MODELS)})")
        estimator = _MODELS[self.model](self.random_state)
        self.scale_ = latencies.mean()
        self.model_ = estimator.fit(get_space(self.space_).encode(archs, self.encoding), latencies / self.scale_)

    def _predict(self, archs: list[str], return_std: bool) -> tuple[np.ndarray, None]:
        return self.scale_ * self.model_.predict(get_space(self.space_).encode(archs, self.encoding)), None
