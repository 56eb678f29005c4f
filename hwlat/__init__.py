"""hwlat: hardware-aware latency measurement, prediction and search.

The entry points are re-exported here and imported on first use, so `import hwlat` stays light
(torch, ONNX Runtime and scikit-learn load only when the part that needs them is used).
"""

from __future__ import annotations

import importlib

from hwlat._errors import HwlatError
from hwlat._version import __version__

_EXPORTS = {
    "get_space": "hwlat.spaces",
    "Device": "hwlat.devices",
    "DeviceRegistry": "hwlat.devices",
    "MeasurementProtocol": "hwlat.profilers",
    "profile": "hwlat.profilers",
    "MeasurementStore": "hwlat.store",
    "load_dataset": "hwlat.datasets",
    "make_predictor": "hwlat.predictors",
    "OpPriorPredictor": "hwlat.predictors",
    "evaluate": "hwlat.predictors",
    "Objective": "hwlat.reports",
    "ParetoReport": "hwlat.reports",
}

__all__ = ["HwlatError", "__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hwlat' has no attribute {name!r}")
