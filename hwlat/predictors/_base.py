"""The predictor contract (fit on source devices, adapt to a target's few samples, predict) and its file format."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from hwlat._errors import HwlatError
from hwlat._files import read_npz, write_npz
from hwlat._version import __version__
from hwlat.datasets import LatencyDataset
from hwlat.spaces import get_space

#: version of the saved-predictor file layout; `load` refuses other versions
FORMAT_VERSION = 1
_REGISTRY: dict[str, type[BasePredictor]] = {}


class BasePredictor(BaseEstimator, abc.ABC):
    """Latency predictor in scikit-learn style: configuration in `__init__`, learned state in `fit`/`adapt`.

    Subclasses implement `_adapt` and `_predict`, and `_fit`/`_fit_state`/`_restore` when they learn from
    source devices. A saved file holds the configuration, the fit state as arrays and the adaptation samples;
    loading restores the fit state and replays the (deterministic) adaptation.
    """

    #: registry name used on the command line and in saved files
    kind: ClassVar[str]
    #: fewest target latencies `adapt` accepts
    min_samples: ClassVar[int] = 2
    #: whether `predict(..., return_std=True)` works
    provides_std: ClassVar[bool] = False
    #: whether `select` can choose which archs the target should measure next
    can_select: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    def fit(self, dataset: LatencyDataset) -> BasePredictor:
        """Learn from every device of `dataset` (the source devices); NaN latencies count as unmeasured."""
        self.space_ = dataset.space
        self.devices_ = list(dataset.devices)
        self.samples_: tuple[list[str], np.ndarray] | None = None
        self._fit(dataset)
        return self

    def adapt(self, archs: Sequence[str], latencies: Sequence[float]) -> BasePredictor:
        """Specialise to a target device from its measured `latencies` (ms) of `archs`."""
        if not hasattr(self, "space_"):
            raise HwlatError(f"{self.kind} predictor must be fitted before adapt")
        space = get_space(self.space_)
        archs = [space.canonical(a) for a in archs]
        values = np.asarray(latencies, dtype=float)
        if values.shape != (len(archs),):
            raise HwlatError(f"adapt got {len(archs)} archs but {values.size} latencies")
        if len(archs) < self.min_samples:
            raise HwlatError(f"{self.kind} predictor needs at least {self.min_samples} target latencies, "
                             f"got {len(archs)}")
        if not np.all(np.isfinite(values) & (values > 0)):
            raise HwlatError("target latencies must be finite and positive (ms)")
        self._adapt(archs, values)
        self.samples_ = (archs, values)
        return self

    def predict(self, archs: Sequence[str], return_std: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Latency in ms of each arch on the adapted target; with `return_std`, also a standard deviation."""
        if getattr(self, "samples_", None) is None:
            raise HwlatError(f"{self.kind} predictor must be adapted to a target device before predict")
        if return_std and not self.provides_std:
            raise HwlatError(f"{self.kind} predictor has no uncertainty estimate")
        mean, std = self._predict(list(archs), return_std)
        return (mean, std) if return_std else mean

    def select(self, archs: Sequence[str], count: int) -> np.ndarray:
        """Indices into `archs` of the `count` archs the adapted target should measure next (active selection).

        Archs the predictor was adapted on, and repeats, are never chosen.
        """
        if not self.can_select:
            raise HwlatError(f"{self.kind} predictor cannot choose which archs to measure")
        if getattr(self, "samples_", None) is None:
            raise HwlatError(f"{self.kind} predictor must be adapted (e.g. on the reference archs) before select")
        space = get_space(self.space_)
        canonical = [space.canonical(a) for a in archs]
        seen = set(self.samples_[0])
        open_rows = []
        for i, arch in enumerate(canonical):
            if arch not in seen:
                seen.add(arch)
                open_rows.append(i)
        if not 1 <= count <= len(open_rows):
            raise HwlatError(f"count must be in 1..{len(open_rows)} (candidate archs not measured yet), got {count}")
        chosen = self._select([canonical[i] for i in open_rows], count)
        return np.asarray(open_rows, dtype=int)[chosen]

    def _fit(self, dataset: LatencyDataset) -> None:
        """Learn from source devices (nothing by default)."""

    def _fit_state(self) -> dict[str, np.ndarray]:
        """Arrays that `_restore` turns back into the fitted state."""
        return {}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted state from `_fit_state`'s arrays."""

    @abc.abstractmethod
    def _adapt(self, archs: list[str], latencies: np.ndarray) -> None:
        """Learn the target from canonical `archs` and their positive latencies."""

    @abc.abstractmethod
    def _predict(self, archs: list[str], return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean latency of each arch, and its standard deviation if `return_std` (else None)."""

    def _select(self, archs: list[str], count: int) -> np.ndarray:
        """Positions in the distinct, unmeasured canonical `archs` of the `count` to measure next."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Write the predictor to one `.npz` file (JSON header + arrays, no pickles); returns the path."""
        if not hasattr(self, "space_"):
            raise HwlatError(f"{self.kind} predictor must be fitted before save")
        header = {"format": "hwlat-predictor", "version": FORMAT_VERSION, "hwlat_version": __version__,
                  "kind": self.kind, "params": self.get_params(), "space": self.space_, "devices": self.devices_}
        arrays = {f"fit.{name}": value for name, value in self._fit_state().items()}
        if self.samples_ is not None:
            arrays["adapt.archs"] = np.asarray(self.samples_[0], dtype=str)
            arrays["adapt.latency"] = self.samples_[1]
        return write_npz(path, header, arrays)

    @staticmethod
    def load(path: str | os.PathLike) -> BasePredictor:
        """A predictor written by `save`, fitted and (if it was) adapted again."""
        header, arrays = read_npz(path, "hwlat predictor")
        if header.get("format") != "hwlat-predictor" or header.get("version") != FORMAT_VERSION:
            raise HwlatError(f"{path}: unsupported predictor file (format {header.get('format')!r}, "
                             f"version {header.get('version')!r}; this hwlat reads version {FORMAT_VERSION})")
        if header["kind"] not in _REGISTRY:
            raise HwlatError(f"{path}: unknown predictor kind {header['kind']!r}")
        params = {name: _tuples(value) for name, value in header["params"].items()}
        predictor = _REGISTRY[header["kind"]](**params)
        predictor.space_, predictor.devices_, predictor.samples_ = header["space"], header["devices"], None
        predictor._restore({name[4:]: v for name, v in arrays.items() if name.startswith("fit.")})
        if "adapt.archs" in arrays:
            predictor.adapt(arrays["adapt.archs"].tolist(), arrays["adapt.latency"])
        return predictor


def _tuples(value: object) -> object:
    """JSON lists back to the tuples predictors take as configuration."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


#: named configurations `make_predictor` accepts beside the registry kinds: name -> (kind, parameters)
PRESETS: dict[str, tuple[str, dict]] = {
    "hwlat": ("hwlat", {}), "help": ("help", {}), "gb": ("target-only", {"model": "gb"}),
    "mlp": ("target-only", {"model": "mlp"}), "lut": ("target-only", {"model": "lut"}),
    "flops": ("proxy", {"proxy": "flops"}), "params": ("proxy", {"proxy": "params"})}


def predictor_kinds() -> tuple[str, ...]:
    """Names `make_predictor` accepts: the presets, then registry kinds that are no preset."""
    return (*PRESETS, *(kind for kind in _REGISTRY if kind not in PRESETS))


def make_predictor(name: str, **params) -> BasePredictor:
    """A new predictor from a preset or registry name, `params` overriding the preset's; HwlatError if unknown."""
    kind, preset = PRESETS.get(name, (name, {}))
    if kind not in _REGISTRY:
        raise HwlatError(f"unknown predictor {name!r} (known: {', '.join(predictor_kinds())})")
    return _REGISTRY[kind](**{**preset, **params})
