"""Pressure probes: a workload's CPU and memory pressure on the target's cores, recorded per dataset and resumable."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import psutil
import pytest

from conftest import PROJECT_ROOT

from hwlat._errors import HwlatError
from hwlat.profilers import load_colocation_dataset, measure_pressure, record_pressure
from hwlat.profilers import _pressure
from hwlat.profilers._pressure import (PRESSURE_COLUMNS, PRESSURE_KEYS, join_pressure, load_pressure,
                                       pressure_summary)

PINNED = PROJECT_ROOT / "data" / "interference-cpu-pinned"


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two usable cores")
def test_probe_sees_a_cpu_hog_on_the_target_core_and_not_on_the_other():
    before = _children()
    # three rounds, as datasets are probed: one round of 0.2 s sees only ~50 preemptions and its refill ratio scatters
    probe = {"target_threads": 1, "placement": "pinned", "rounds": 3, "seconds": 0.2}
    other_core, same_core, thrasher = (measure_pressure(w, **probe) for w in ("cpu-x1", "cpu-x2", "cache-x2"))
    assert set(other_core) == set(PRESSURE_COLUMNS)
    # cpu-x1 runs on core 1; the second process of cpu-x2 shares core 0 with the probe and takes half of it
    assert other_core["pressure_share"] > 0.85, other_core
    assert 0.3 < same_core["pressure_share"] < 0.75, same_core
    # L1-resident maths is not slowed by a co-runner that is itself L1-resident (chunks far shorter than a slice)
    assert 0.8 < same_core["pressure_compute"] < 1.25, same_core
    # refill: a cache thrasher on the probe's core and the other evicts its L2 buffer to DRAM; an L1-resident hog on its
    # core leaves it in L2 unless the host moved the virtual CPU meanwhile. Measured over 20 calls each outside pytest
    # (2026-11-25): cpu-x1 1.00-1.01, cpu-x2 1.10-1.97, cache-x2 3.25-5.06; in the test suite cpu-x2 gave 2.2 and 2.8,
    # and cache-x2 2.34 once (2026-11-26, beside 1.11 and 0.99): the thrasher is asserted above both hogs and 2x
    assert thrasher["pressure_refill"] > max(2.0, same_core["pressure_refill"], other_core["pressure_refill"]), \
        (other_core, same_core, thrasher)
    assert _children() <= before  # co-runners and probes are gone


@pytest.mark.parametrize("kwargs, message", [
    ({"workload": "gpu-x1"}, "bad co-runner 'gpu-x1'"),
    ({"workload": "cpu-x1", "placement": "shared"}, "placement must be one of free, pinned, got 'shared'"),
    ({"workload": "cpu-x1", "rounds": 0}, "pressure probing needs rounds >= 1"),
    ({"workload": "cpu-x1", "intensity": 1.5}, "intensity in \\(0, 1\\]"),
])
def test_bad_probe_settings_are_one_line_errors(kwargs, message):
    workload = kwargs.pop("workload")
    with pytest.raises(HwlatError, match=message):
        measure_pressure(workload, **kwargs)


def _scenarios(tmp_path) -> None:
    rows = [{"workload": w, "placement": "pinned", "intensity": 1.0, "target_threads": t, "scenario_id": f"{w}{t}{k}"}
            for w in ("cpu-x1", "membw-x2") for t in (1, 2) for k in range(2)]  # two targets per combination
    pd.DataFrame(rows).to_csv(tmp_path / "scenarios.csv", index=False)


def test_record_pressure_resumes_and_repeats_in_passes(tmp_path, monkeypatch):
    _scenarios(tmp_path)
    calls: list[tuple] = []

    def fake(workload, *, target_threads, placement, intensity, rounds, seconds):
        calls.append((workload, target_threads))
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted during the third measurement
        return {c: 1.0 + 0.1 * len(calls) for c in PRESSURE_COLUMNS}

    monkeypatch.setattr(_pressure, "measure_pressure", fake)
    with pytest.raises(KeyboardInterrupt):
        record_pressure(tmp_path, repeats=2)
    assert len(load_pressure(tmp_path)) == 2  # what was measured is on disk, nothing half-written
    progress = []
    table = record_pressure(tmp_path, repeats=2, on_start=lambda total, done: progress.append((total, done)))
    assert progress == [(8, 2)]
    assert len(table) == 8 and (table.groupby(list(PRESSURE_KEYS)).size() == 2).all()
    # one pass over the four combinations before the second: the interrupted one was measured first on resume
    assert calls[2:7] == [("membw-x2", 1), ("membw-x2", 1), ("membw-x2", 2), ("cpu-x1", 1), ("cpu-x1", 2)]
    assert len(record_pressure(tmp_path, repeats=2)) == 8 and len(calls) == 9  # nothing left to do
    with pytest.raises(HwlatError, match="pressure repeats must be >= 1"):
        record_pressure(tmp_path, repeats=0)
    with pytest.raises(HwlatError, match="cannot read .*scenarios.csv"):
        record_pressure(tmp_path / "missing")


def test_join_takes_the_median_of_repeats_and_leaves_unmeasured_workloads_nan():
    scenarios = pd.DataFrame({"workload": ["cpu-x1", "cpu-x1", "cache-x1"], "placement": "pinned",
                              "intensity": [1.0, 1.0, 1.0], "target_threads": [1, 2, 1]})
    measured = pd.DataFrame([{"workload": "cpu-x1", "placement": "pinned", "intensity": 1.0, "target_threads": 1,
                              **{c: v for c in PRESSURE_COLUMNS}} for v in (1.0, 1.2, 2.0)])
    joined = join_pressure(scenarios, measured)
    np.testing.assert_allclose(joined["pressure_stream"], [1.2, np.nan, np.nan])
    assert len(joined) == 3 and list(joined["workload"]) == list(scenarios["workload"])


@pytest.mark.parametrize("dataset, refill", [
    (PINNED, False), *((PINNED.with_name(f"interference-cpu-pinned-{s}"), True) for s in "bcdefgh")],
    ids=lambda p: getattr(p, "name", ""))
def test_the_pinned_datasets_ship_their_pressure(dataset, refill):
    scenarios, _ = load_colocation_dataset(dataset)
    table = load_pressure(dataset)
    complete = table[table[list(PRESSURE_COLUMNS)].notna().all(axis=1)] if refill else table
    assert (complete.groupby(list(PRESSURE_KEYS)).size() >= 3).all()
    assert scenarios[[c for c in PRESSURE_COLUMNS if refill or c != "pressure_refill"]].notna().all().all()
    if not refill:  # measured on the earlier CPU, before the refill probe existed
        assert scenarios["pressure_refill"].isna().all()
    # a CPU-bound process sharing the target's core leaves it about half the core
    shared = scenarios[(scenarios["workload"] == "cpu-x2") & (scenarios["target_threads"] == 1)]
    alone = scenarios[(scenarios["workload"] == "cpu-x1") & (scenarios["target_threads"] == 1)]
    assert shared["pressure_share"].between(0.3, 0.7).all() and alone["pressure_share"].gt(0.85).all()


def test_pressure_files_from_before_the_refill_probe_load_and_are_completed(tmp_path, monkeypatch):
    _scenarios(tmp_path)
    older = [c for c in PRESSURE_COLUMNS if c != "pressure_refill"]
    rows = [{"workload": w, "placement": "pinned", "intensity": 1.0, "target_threads": t, **{c: 1.5 for c in older}}
            for w in ("cpu-x1", "membw-x2") for t in (1, 2)]
    pd.DataFrame(rows).to_csv(tmp_path / "pressure.csv", index=False)
    assert load_pressure(tmp_path)["pressure_refill"].isna().all()
    monkeypatch.setattr(_pressure, "measure_pressure", lambda *a, **k: {c: 1.1 for c in PRESSURE_COLUMNS})
    table = record_pressure(tmp_path, repeats=1)  # the older rows are not complete measurements: each key again
    assert len(table) == 8 and table["pressure_refill"].notna().sum() == 4
    joined = join_pressure(pd.read_csv(tmp_path / "scenarios.csv"), table)
    np.testing.assert_allclose(joined["pressure_stream"], 1.3)  # the median of the older 1.5 and the new 1.1
    np.testing.assert_allclose(joined["pressure_refill"], 1.1)


def test_cli_prints_the_medians_and_how_far_repeats_stray(hwlat, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # nine columns: rich folds workload names in 80
    _scenarios(tmp_path)
    rows = [{"workload": w, "placement": "pinned", "intensity": 1.0, "target_threads": t,
             **{c: v for c in PRESSURE_COLUMNS}} for w in ("cpu-x1", "membw-x2") for t in (1, 2) for v in (1.0, 1.5)]
    pd.DataFrame(rows).to_csv(tmp_path / "pressure.csv", index=False)  # every key measured twice: nothing to do
    medians, stray = pressure_summary(load_pressure(tmp_path))
    assert len(medians) == 4 and (medians["pressure_stream"] == 1.25).all()
    np.testing.assert_allclose(stray.loc["max", "pressure_share"], 0.2)  # 1.0 and 1.5 stray 20 % from 1.25
    code, out, err = hwlat("interference", "pressure", str(tmp_path), "--repeats", "2")
    assert code == 0 and "membw-x2" in out and "1.25" in out and "share 20.0% / 20.0% / 20.0%" in out


@pytest.mark.parametrize("content, message", [
    ("workload,placement\ncpu-x1,pinned\n", "lacks column"),
    ('"unterminated\n', "cannot read"),
])
def test_cli_bad_pressure_files_are_one_line(hwlat, tmp_path, content, message):
    _scenarios(tmp_path)
    (tmp_path / "pressure.csv").write_text(content)
    before = (tmp_path / "pressure.csv").read_text()
    code, _, err = hwlat("interference", "pressure", str(tmp_path))
    assert code != 0 and message in err and "Traceback" not in err
    assert (tmp_path / "pressure.csv").read_text() == before  # nothing overwritten


def test_cli_pressure_on_a_missing_dataset_is_one_line(hwlat, tmp_path):
    code, _, err = hwlat("interference", "pressure", str(tmp_path / "nothing"))
    assert code != 0 and "cannot read" in err and "Traceback" not in err
    code, _, err = hwlat("interference", "pressure", str(tmp_path), "--repeats", "0")
    assert code != 0 and "Traceback" not in err
