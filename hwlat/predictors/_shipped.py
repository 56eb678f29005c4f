"""Predictors that ship with hwlat, fitted on the project's own measurements in `data/`."""

from __future__ import annotations

from pathlib import Path

from hwlat._errors import HwlatError
from hwlat.predictors._base import BasePredictor

#: folder of the shipped predictor files (package data)
SHIPPED_DIR = Path(__file__).with_name("shipped")

#: shipped predictor name -> what it was fitted on (the command that rebuilds it is in data/nb201-cpu/README.md)
SHIPPED = {"nb201-cpu": "hwlat predictor on data/nb201-cpu: 1,000 NB201 cells x 5 CPU platforms (ORT, torch)"}


def shipped_predictor(name: str = "nb201-cpu") -> BasePredictor:
    """A fitted (not yet adapted) predictor that ships with hwlat; HwlatError lists the names when unknown."""
    if name not in SHIPPED:
        raise HwlatError(f"unknown shipped predictor {name!r} (shipped: {', '.join(SHIPPED)})")
    return BasePredictor.load(SHIPPED_DIR / f"{name}.npz")
