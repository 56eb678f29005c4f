"""`hwlat predictor` end to end: evaluate (JSON), train -> adapt -> predict, one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import require_shared
from hwlat.cli import _predictor, main
from hwlat.datasets import load_help
from hwlat.predictors import target_samples


def invoke(*args: str):
    return CliRunner().invoke(_predictor.app, list(args))


def test_evaluate_json(tmp_path):
    root = require_shared("data/help")
    result = invoke("evaluate", "--data", str(root), "--space", "nb201", "--target", "fpga", "--samples", "5",
                    "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"target", "samples", "seeds", "spearman_mean", "spearman_std"} <= set(out)
    assert out["target"] == "fpga" and out["samples"] == 5 and out["seeds"] == 2 and out["measured"] == 15
    assert 0.9 < out["spearman_mean"] <= 1 and "fpga" not in out["train_devices"]


def test_train_adapt_predict(tmp_path):
    root = require_shared("data/help")
    model = tmp_path / "p.npz"
    result = invoke("train", "--data", str(root), "--space", "nb201", "--out", str(model))
    assert result.exit_code == 0, result.output
    data = load_help(root, "nb201")
    rows = target_samples(data, "eyeriss", 10, seed=0)
    pd.DataFrame({"arch": [data.archs[i] for i in rows], "latency_ms": data["eyeriss"][rows]}).to_csv(
        tmp_path / "s.csv", index=False)
    assert invoke("adapt", "--model", str(model), "--samples", str(tmp_path / "s.csv"),
                  "--out", str(tmp_path / "a.npz")).exit_code == 0
    (tmp_path / "archs.txt").write_text("\n".join(data.archs[1000:1100]) + "\n")
    result = invoke("predict", "--model", str(tmp_path / "a.npz"), "--archs", str(tmp_path / "archs.txt"), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    predicted = np.array([r["latency_ms"] for r in rows])
    truth = data["eyeriss"][1000:1100]
    assert len(rows) == 100 and all(r["std_ms"] > 0 for r in rows)
    assert np.median(np.abs(predicted - truth) / truth) < 0.1


def test_evaluate_with_active_selection_json():
    root = require_shared("data/help")
    result = invoke("evaluate", "--data", str(root), "--space", "nb201", "--target", "gold_6226", "--samples", "5",
                    "--seeds", "2", "--select", "active", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["selection"] == "active" and out["measured"] == 15 and out["spearman_std"] == 0
    assert out["spearman_mean"] > 0.98


def test_select_names_archs_to_measure_next(tmp_path):
    root = require_shared("data/help")
    model = tmp_path / "p.npz"
    assert invoke("train", "--data", str(root), "--space", "nb201", "--out", str(model),
                  "--train-devices", "1080ti_1,silver_4114,pixel3").exit_code == 0
    data = load_help(root, "nb201")
    refs = list(data.references)
    pd.DataFrame({"arch": [data.archs[i] for i in refs], "latency_ms": data["fpga"][refs]}).to_csv(
        tmp_path / "refs.csv", index=False)
    assert invoke("adapt", "--model", str(model), "--samples", str(tmp_path / "refs.csv"),
                  "--out", str(tmp_path / "a.npz")).exit_code == 0
    candidates = list(data.archs[:300])
    (tmp_path / "candidates.txt").write_text("\n".join(candidates) + "\n")
    result = invoke("select", "--model", str(tmp_path / "a.npz"), "--archs", str(tmp_path / "candidates.txt"),
                    "--count", "5")
    assert result.exit_code == 0, result.output
    chosen = result.stdout.split()
    assert len(set(chosen)) == 5 and set(chosen) <= set(candidates)
    assert not set(chosen) & {data.archs[i] for i in refs}
    result = invoke("select", "--model", str(model), "--archs", str(tmp_path / "candidates.txt"))
    assert result.exit_code != 0 and "must be adapted" in str(result.exception)


def test_holdout_on_a_merged_measurement_table(tmp_path):
    """A project table (one device, two platforms) merged with HELP's folder; the target is one platform."""
    root = require_shared("data/help")
    data = load_help(root, "nb201")
    rows = np.arange(2000, 2300)
    frame = pd.DataFrame({"space": "nb201", "arch": [data.archs[i] for i in rows] * 2, "device_id": "box",
                          "platform": ["a/t1/b1"] * 300 + ["b/t1/b1"] * 300, "tag": "",
                          "median_ms": np.concatenate([data["eyeriss"][rows], data["fpga"][rows]])})
    frame.to_csv(tmp_path / "m.csv", index=False)
    result = invoke("evaluate", "--data", str(root), "--data", str(tmp_path / "m.csv"), "--space", "nb201",
                    "--target", "box:a/t1/b1", "--protocol", "holdout", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["protocol"] == "holdout" and out["measured"] == 10 and out["spearman_mean"] > 0.95
    result = invoke("evaluate", "--data", str(tmp_path / "m.csv"), "--space", "nb201", "--target", "box:a/t1/b1",
                    "--protocol", "holdout", "--train-devices", "box:b/t1/b1", "--samples", "299")
    assert result.exit_code != 0 and "samples must be in 2..298" in str(result.exception)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Exit code and stderr of the real entry point (in process: no interpreter start-up per case)."""
    monkeypatch.setattr(sys, "argv", ["hwlat", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def tiny_help(tmp_path):
    """A HELP-layout nb201 folder with two made-up devices (no reference index), quick to load."""
    folder = tmp_path / "help" / "nasbench201" / "latency"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for device in ("fpga", "board"):
        torch.save(rng.uniform(1, 2, 15625).tolist(), folder / f"{device}.pt")
    return tmp_path / "help"


def test_bad_input_is_one_line_error(tiny_help, monkeypatch, capsys):
    for args, message in ((["--target", "nosuchdevice", "--train-devices", "board"], "device 'nosuchdevice' not in"),
                          (["--target", "fpga", "--train-devices", "fpga"], "also a training device"),
                          (["--target", "fpga", "--train-devices", "board", "--predictor", "oracle"],
                           "unknown predictor"),
                          (["--target", "fpga"], "no HELP meta-train device"),
                          (["--target", "fpga", "--train-devices", "board", "--seeds", "0"], "seeds must be"),
                          (["--target", "fpga", "--train-devices", "board", "--select", "clever"],
                           "selection 'clever' unknown")):
        code, err = run_main(monkeypatch, capsys, "predictor", "evaluate", "--data", str(tiny_help), "--space",
                             "nb201", *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    code, err = run_main(monkeypatch, capsys, "predictor", "evaluate", "--data", str(tiny_help), "--space", "fbnet",
                         "--target", "x")
    assert code == 2 and "no HELP fbnet data" in err
