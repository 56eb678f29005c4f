"""`hwlat data export` and `hwlat data summary`, in process and through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from hwlat.cli import _data
from hwlat.devices import Device
from hwlat.store import MeasurementStore

DEVICE = Device(name="box", kind="local", fingerprint={"cpu_model": "Test CPU", "logical_cores": 2})
STATS = {"median_ms": 2.0, "mean_ms": 2.1, "std_ms": 0.1, "p10_ms": 1.9, "p90_ms": 2.3, "min_ms": 1.8, "max_ms": 3.0,
         "ci_low_ms": 1.95, "ci_high_ms": 2.05, "ci_rel": 0.025, "cv": 0.05, "n": 20, "n_outliers": 0, "number": 1,
         "warmup": 10, "converged": True, "wall_s": 0.4}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "m.sqlite"
    with MeasurementStore(path) as store:
        store.add_device(DEVICE)
        for arch, platform, tag in [("a", "onnxruntime/t1/b1", ""), ("b", "onnxruntime/t1/b1", ""),
                                    ("a", "torch/t1/b1", ""), ("a", "onnxruntime/t1/b1", "retest")]:
            store.add({"space": "nb201", "arch": arch, "device_id": DEVICE.id, "platform": platform, "tag": tag,
                       "runtime": platform.split("/")[0], "runtime_version": "1", "batch_size": 1, "threads": 1,
                       "settings": "{}", **STATS})
    return path


def invoke(*args: str):
    return CliRunner().invoke(_data.app, list(args))


def hwlat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwlat", *args], capture_output=True, text=True, timeout=60)


def test_export_with_filters_prints_rows(db, tmp_path):
    out = tmp_path / "out.parquet"
    result = invoke("export", "--db", str(db), "--out", str(out), "--platform", "onnxruntime/t1/b1", "--tag", "",
                    "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"rows": 2, "path": str(out)}
    assert sorted(pd.read_parquet(out)["arch"]) == ["a", "b"]
    assert (tmp_path / "out.devices.json").exists()


def test_export_csv_with_explicit_format(db, tmp_path):
    out = tmp_path / "latencies.txt"
    result = invoke("export", "--db", str(db), "--out", str(out), "--format", "csv", "--space", "nb201")
    assert result.exit_code == 0, result.output
    assert "4 rows written" in result.stdout and len(pd.read_csv(out)) == 4


def test_summary_json_and_table(db):
    result = invoke("summary", "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    groups = {(g["platform"], g["tag"]): g["count"] for g in json.loads(result.stdout)}
    assert groups == {("onnxruntime/t1/b1", ""): 2, ("onnxruntime/t1/b1", "retest"): 1, ("torch/t1/b1", ""): 1}
    table = invoke("summary", "--db", str(db))
    assert table.exit_code == 0 and "torch/t1/b1" in table.stdout and "retest" in table.stdout


def test_default_database_comes_from_hwlat_db(db, monkeypatch):
    monkeypatch.setenv("HWLAT_DB", str(db))
    result = invoke("summary", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 3


@pytest.mark.parametrize("args, message", [
    (["export", "--out", "{tmp}/out.xlsx"], "unknown format 'xlsx'"),
    (["export", "--out", "{tmp}/missing/out.csv"], "cannot write"),
    (["export", "--db", "{tmp}/absent.sqlite", "--out", "{tmp}/out.csv"], "absent.sqlite does not exist"),
    (["summary", "--db", "nosuchdb://host/x"], "unknown database type"),
])
def test_bad_input_is_one_line_error_exit_2_and_writes_nothing(db, tmp_path, args, message):
    before = sorted(tmp_path.rglob("*"))
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = hwlat("data", *args, *([] if "--db" in args else ["--db", str(db)]))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before
