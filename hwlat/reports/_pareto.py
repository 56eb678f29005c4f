"""Which rows of a table are Pareto-optimal for a set of objectives (moocore's dimension sweep)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError

GOALS = ("min", "max")


@dataclass(frozen=True)
class Objective:
    """A numeric column to minimise or maximise; `label` is how plots and tables name it."""

    column: str
    goal: str = "min"
    label: str | None = None

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise HwlatError(f"objective {self.column!r}: goal must be 'min' or 'max', got {self.goal!r}")

    @property
    def title(self) -> str:
        """The label, or the column name with its goal, e.g. ``latency_ms (min)``."""
        return self.label or f"{self.column} ({self.goal})"


def objective_values(frame: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """The objectives' columns as a float array; HwlatError names a missing or non-numeric column."""
    if not objectives:
        raise HwlatError("at least one objective is needed")
    missing = [o.column for o in objectives if o.column not in frame.columns]
    if missing:
        raise HwlatError(f"objective column(s) {', '.join(missing)} not in the table "
                         f"(columns: {', '.join(map(str, frame.columns))})")
    try:
        values = frame[[o.column for o in objectives]].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise HwlatError("objective columns must be numeric") from None
    bad = [o.column for o, ok in zip(objectives, np.isfinite(values).all(axis=0)) if not ok]
    if bad:
        raise HwlatError(f"objective column(s) {', '.join(bad)} hold missing or infinite values")
    return values


def pareto_front(frame: pd.DataFrame, objectives: Sequence[Objective]) -> pd.Series:
    """Boolean Series, True for rows no other row dominates (ties on every objective all stay on the front)."""
    values = objective_values(frame, objectives)
    if len(frame) == 0:
        return pd.Series([], index=frame.index, dtype=bool)
    import moocore

    mask = moocore.is_nondominated(values, maximise=[o.goal == "max" for o in objectives], keep_weakly=True)
    return pd.Series(mask, index=frame.index, name="on_front")
