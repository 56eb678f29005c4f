"""Pareto fronts against brute force, and the report files: HTML with an embedded plot, CSV, JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hwlat._errors import HwlatError
from hwlat.reports import Objective, ParetoReport, pareto_front
from hwlat.reports._report import FRONT_TABLE_ID, PLOT_ID


def brute_force_front(values: np.ndarray, maximise: list[bool]) -> np.ndarray:
    signed = np.where(maximise, -values, values)  # everything to minimise
    dominated = [(np.all(signed <= row, axis=1) & np.any(signed < row, axis=1)).any() for row in signed]
    return ~np.array(dominated)


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_brute_force_with_mixed_goals(seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.integers(0, 12, size=(300, 3)).astype(float), columns=["lat", "acc", "params"])
    objectives = [Objective("lat", "min"), Objective("acc", "max"), Objective("params", "min")]
    mask = pareto_front(frame, objectives)
    expected = brute_force_front(frame.to_numpy(), [False, True, False])
    assert mask.tolist() == expected.tolist() and 0 < mask.sum() < len(frame)


def test_identical_points_on_the_front_all_stay():
    frame = pd.DataFrame({"lat": [1.0, 1.0, 2.0], "acc": [0.9, 0.9, 0.5]})
    assert pareto_front(frame, [Objective("lat"), Objective("acc", "max")]).tolist() == [True, True, False]


@pytest.mark.parametrize("frame, objectives, message", [
    (pd.DataFrame({"lat": [1.0]}), [Objective("lat"), Objective("acc", "max")], "acc not in the table"),
    (pd.DataFrame({"lat": [1.0, np.nan]}), [Objective("lat")], "missing or infinite"),
    (pd.DataFrame({"lat": ["fast"]}), [Objective("lat")], "must be numeric"),
    (pd.DataFrame({"lat": [1.0]}), [], "at least one objective"),
])
def test_bad_objectives_name_the_problem(frame, objectives, message):
    with pytest.raises(HwlatError, match=message):
        pareto_front(frame, objectives)


def test_unknown_goal_is_rejected():
    with pytest.raises(HwlatError, match="goal must be 'min' or 'max'"):
        Objective("lat", "fastest")


def sample_report() -> ParetoReport:
    rng = np.random.default_rng(0)
    latency = rng.uniform(1, 10, 60)
    frame = pd.DataFrame({"arch": [f"|op~0|<{i}>" for i in range(60)], "latency_ms": latency,
                          "accuracy": 60 + 3 * np.log(latency) + rng.normal(0, 1, 60)})
    return ParetoReport("NB201 on test-device", frame, (Objective("latency_ms", "min", "latency (ms)"),
                                                         Objective("accuracy", "max")),
                        settings={"device": "test-device", "latency_budget_ms": 5})


def test_report_files(tmp_path):
    report = sample_report()
    paths = report.write(tmp_path / "front")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.csv", "front.html", "front.json"]

    table = pd.read_csv(paths["csv"])
    assert len(table) == 60 and table["on_front"].tolist() == report.on_front.tolist()
    data = json.loads(paths["json"].read_text())
    front = report.front()
    assert [row["arch"] for row in data["front"]] == front["arch"].tolist()
    assert data["settings"] == {"device": "test-device", "latency_budget_ms": 5} and data["points"] == 60
    assert front["latency_ms"].is_monotonic_increasing and front["accuracy"].is_monotonic_increasing

    page = paths["html"].read_text()
    assert f'id="{PLOT_ID}"' in page and f'id="{FRONT_TABLE_ID}"' in page
    assert "<script src=" not in page, "the page must not load plotly from the network"
    assert page.count("&lt;") >= len(front), "arch strings must be HTML-escaped in the table"
    assert "latency (ms)" in page and "latency_budget_ms" in page


def test_report_needs_two_objectives_and_the_label_column():
    frame = pd.DataFrame({"arch": ["a"], "lat": [1.0]})
    with pytest.raises(HwlatError, match="at least two objectives"):
        ParetoReport("t", frame, (Objective("lat"),))
    with pytest.raises(HwlatError, match="label column 'name'"):
        ParetoReport("t", frame.assign(acc=1.0), (Objective("lat"), Objective("acc", "max")), label="name")


def test_report_into_missing_directory_is_an_error(tmp_path):
    with pytest.raises(HwlatError, match="does not exist"):
        sample_report().write(tmp_path / "missing" / "front")
    assert list(tmp_path.iterdir()) == []
