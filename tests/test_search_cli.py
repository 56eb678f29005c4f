"""`hwlat search` / `hwlat report`: the loop on a device, bad inputs, killed workers, the report in real Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import PROJECT_ROOT, render_in_chromium, require_shared

HWLAT = [sys.executable, "-m", "hwlat"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HWLAT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def help_nb201() -> Path:
    require_shared("data/nats-bench/nats_bench.csv")
    return require_shared("data/help/nasbench201")


@pytest.fixture
def shared_env(help_nb201) -> dict:
    return {"HWLAT_SHARED": str(help_nb201.parents[2])}


def test_search_on_a_device_from_data_then_report_from_storage(tmp_path, help_nb201, shared_env):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    done = run("search", "--device", "fpga", "--latency-data", str(help_nb201), "--latency-budget", "5",
               "--trials", "60", "--storage", storage, "--study", "fpga5", "--report", str(tmp_path / "r"),
               "--json", env=shared_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["completed"] == 60 and summary["queries"] <= 60
    pick = summary["pick"]
    assert pick["true_latency_ms"] <= 5.0 and 60 < pick["cifar100"] < 74
    front = json.loads((tmp_path / "r.json").read_text())["front"]
    assert front and all(row["latency_ms"] <= 5.0 * 1.05 for row in front)
    assert all("true_latency_ms" in row for row in front)
    again = run("report", "--storage", storage, "--study", "fpga5", "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert len(json.loads((tmp_path / "again.json").read_text())["front"]) == len(front)


@pytest.mark.parametrize("args, message", [
    (["--latency-budget", "-3"], "--latency-budget must be a positive"),
    (["--latency-budget", "5", "--device", "no_such_board"], "device 'no_such_board' not in"),
    (["--latency-budget", "5", "--objective", "mnist"], "unknown accuracy objective 'mnist'"),
    (["--latency-budget", "5", "--strategy", "annealing"], "unknown search strategy 'annealing'"),
    (["--latency-budget", "5", "--report", "/no/such/dir/r"], "directory /no/such/dir does not exist"),
    (["--latency-budget", "5", "--workers", "2"], "several workers need a shared storage"),
])
def test_bad_inputs_give_one_line(args, message, help_nb201, shared_env):
    done = run("search", "--device", "fpga", "--latency-data", str(help_nb201), "--trials", "5", *args,
               env=shared_env)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_accuracy_table_without_the_column(tmp_path, help_nb201):
    table = tmp_path / "acc.csv"
    table.write_text("ArchitectureString,Other\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n")
    done = run("search", "--device", "fpga", "--latency-data", str(help_nb201), "--latency-budget", "5",
               "--accuracy-table", str(table))
    assert done.returncode == 2 and "no column 'CIFAR100TestAccuracy200Epochs'" in done.stderr


def test_report_of_unknown_study(tmp_path):
    done = run("report", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--study", "nope", "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "no study 'nope'" in done.stderr


def test_killed_worker_loses_no_trial(tmp_path):
    """Two workers share a study; one is killed mid-trial; its trial is failed by heartbeat and retried."""
    storage, trials = f"sqlite:///{tmp_path / 'shared.db'}", 100
    worker = [sys.executable, str(PROJECT_ROOT / "tests" / "search_worker.py"), storage, "w", str(trials)]
    started = {name: tmp_path / f"{name}-started" for name in ("victim", "survivor")}

    def wait_for(name: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 120
        while not started[name].exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)

    victim = subprocess.Popen([*worker, "2", str(started["victim"]), "hang"], stderr=subprocess.PIPE, text=True)
    survivor = None
    try:
        wait_for("victim", victim)  # the victim stops inside its first trial; the survivor joins
        survivor = subprocess.Popen([*worker, "1", str(started["survivor"])], stderr=subprocess.PIPE, text=True)
        wait_for("survivor", survivor)
        time.sleep(2.5)  # the victim has sent heartbeats for its trial
        assert victim.poll() is None, victim.stderr.read()  # still working when killed
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        assert survivor.wait(120) == 0, survivor.stderr.read()
    finally:
        for process in (survivor, victim):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    trials_ = optuna.load_study(study_name="w", storage=storage).get_trials()
    states = [t.state for t in trials_]
    assert states.count(optuna.trial.TrialState.COMPLETE) in (trials, trials + 1)
    assert optuna.trial.TrialState.RUNNING not in states
    completed = {tuple(sorted(t.params.items())) for t in trials_ if t.state == optuna.trial.TrialState.COMPLETE}
    failed = [t for t in trials_ if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and failed[0].params  # the victim's trial, failed by the survivor's heartbeat check
    assert tuple(sorted(failed[0].params.items())) in completed  # ... and its architecture retried and scored


def test_report_renders_in_headless_chromium(tmp_path, help_nb201, shared_env):
    done = run("search", "--device", "eyeriss", "--latency-data", str(help_nb201), "--latency-budget", "7",
               "--trials", "60", "--report", str(tmp_path / "r"), "--json", env=shared_env)
    assert done.returncode == 0, done.stderr
    dom = render_in_chromium(tmp_path / "r.html", tmp_path)
    front = json.loads((tmp_path / "r.json").read_text())["front"]
    assert 'id="pareto-plot"' in dom and "main-svg" in dom  # plotly drew its SVG inside the plot element
    table = dom[dom.index('id="pareto-front"'):]
    assert table[:table.index("</table>")].count("<tr") == len(front) + 1  # header + one row per front member
