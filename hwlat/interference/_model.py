"""The interference-model contract (fit on scenarios, predict slowdowns) and its file format."""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from hwlat._errors import HwlatError
from hwlat._files import read_npz, write_npz
from hwlat._version import __version__
from hwlat.interference._features import QUANTILE_TARGETS, TARGETS, FeatureSpec, InterferenceData
from hwlat.predictors._base import _tuples

#: version of the saved-model file layout; `load` refuses other versions (2: the mean slowdown is a target)
FORMAT_VERSION = 2
#: predictions stay within the training log-slowdowns widened by this much (a factor of 2) on either side
_LOG_MARGIN = float(np.log(2.0))
_REGISTRY: dict[str, type[InterferenceModel]] = {}


class InterferenceModel(BaseEstimator, abc.ABC):
    """Predicts a target's slowdowns (median, p90, p99 and mean latency over its isolated median) beside a co-runner
    workload.

    Configuration in `__init__`, learned state in `fit`; subclasses work in log-slowdown and implement `_fit`,
    `_predict`, `_state` and `_restore`. Features are normalised with statistics of the training scenarios only.
    Predictions are clipped to the training slowdowns' range widened by a factor of 2 either way, so a regressor
    extrapolating on an unusual window cannot return absurd slowdowns, and the quantiles ordered (p99 >= p90 >=
    median).
    """

    #: registry name used on the command line and in saved files
    kind: ClassVar[str]
    #: descriptor groups of EXTRAS the features include (a constructor parameter of the models that use features)
    extras: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    def fit(self, data: InterferenceData) -> InterferenceModel:
        """Learn from the scenarios of `data` and their measured slowdowns."""
        if len(data) == 0:
            raise HwlatError(f"{self.kind} interference model needs at least one scenario to fit")
        self.spec_ = FeatureSpec.fit(data, self.extras)
        self.trained_on_ = {"scenarios": len(data), "workloads": int(data.scenarios["workload"].nunique()),
                            "targets": int(data.scenarios["target"].nunique())}
        log_targets = np.log(data.targets())
        self.log_range_ = np.stack([log_targets.min(axis=0) - _LOG_MARGIN, log_targets.max(axis=0) + _LOG_MARGIN])
        self._fit(data, log_targets)
        return self

    def predict(self, data: InterferenceData) -> pd.DataFrame:
        """Predicted slowdowns, one row per scenario of `data`, columns TARGETS."""
        if not hasattr(self, "spec_"):
            raise HwlatError(f"{self.kind} interference model must be fitted before predict")
        if len(data) == 0:
            return pd.DataFrame(columns=list(TARGETS), dtype=float)
        log = np.clip(self._predict(data), self.log_range_[0], self.log_range_[1])
        quantiles = len(QUANTILE_TARGETS)
        log[:, :quantiles] = np.maximum.accumulate(log[:, :quantiles], axis=1)  # p99 >= p90 >= median
        return pd.DataFrame(np.exp(log), columns=list(TARGETS))

    @abc.abstractmethod
    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        """Learn from `data` and its log-slowdowns (n x len(TARGETS)); `self.spec_` is set."""

    @abc.abstractmethod
    def _predict(self, data: InterferenceData) -> np.ndarray:
        """Log-slowdowns (n x len(TARGETS))."""

    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that `_restore` turns back into the fitted state."""
        return {}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted state from `_state`'s arrays (`self.spec_` is set)."""

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to one `.npz` file (JSON header + arrays, no pickles); returns the path."""
        if not hasattr(self, "spec_"):
            raise HwlatError(f"{self.kind} interference model must be fitted before save")
        spec_header, spec_arrays = self.spec_.to_arrays()
        header = {"format": "hwlat-interference-model", "version": FORMAT_VERSION, "hwlat_version": __version__,
                  "kind": self.kind, "params": self.get_params(), "spec": spec_header,
                  "trained_on": self.trained_on_}
        arrays = {"log_range": self.log_range_, **{f"spec.{k}": v for k, v in spec_arrays.items()},
                  **{f"state.{k}": v for k, v in self._state().items()}}
        return write_npz(path, header, arrays)

    @staticmethod
    def load(path: str | os.PathLike) -> InterferenceModel:
        """A model written by `save`, fitted as it was."""
        header, arrays = read_npz(path, "hwlat interference model")
        if header.get("format") != "hwlat-interference-model" or header.get("version") != FORMAT_VERSION:
            raise HwlatError(f"{path}: unsupported interference model file (format {header.get('format')!r}, "
                             f"version {header.get('version')!r}; this hwlat reads version {FORMAT_VERSION})")
        if header["kind"] not in _REGISTRY:
            raise HwlatError(f"{path}: unknown interference model kind {header['kind']!r}")
        model = _REGISTRY[header["kind"]](**{k: _tuples(v) for k, v in header["params"].items()})
        model.spec_ = FeatureSpec.from_arrays(header["spec"], {k[5:]: v for k, v in arrays.items()
                                                                if k.startswith("spec.")})
        model.trained_on_, model.log_range_ = header["trained_on"], arrays["log_range"]
        model._restore({k[6:]: v for k, v in arrays.items() if k.startswith("state.")})
        return model


def model_kinds() -> tuple[str, ...]:
    """Names `make_model` accepts."""
    return tuple(_REGISTRY)


def make_model(kind: str, **params) -> InterferenceModel:
    """A new, unfitted interference model of registry `kind`; HwlatError lists the kinds when unknown."""
    if kind not in _REGISTRY:
        raise HwlatError(f"unknown interference model {kind!r} (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[kind](**params)
