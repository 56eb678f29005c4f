"""Co-location recording: clean start and stop of co-runners (incl. SIGINT/SIGTERM), sampling, store, dataset,
and the pinned placement (fixed cores, passive runtime threads)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from hwlat._errors import HwlatError
from hwlat.profilers import (ModelSpec, WorkloadMix, export_colocation_dataset, import_colocation_dataset,
                             kernel_tick_ms, load_colocation_dataset, measure_time_slice_ms, record_colocation,
                             scenarios_from)
from hwlat.profilers._colocation import _Processes
from hwlat.profilers._colocation_dataset import MEAN_COLUMNS
from hwlat.profilers._colocation_spec import pinned_cpus
from hwlat.profilers._sysmetrics import sample_series
from hwlat.store import ColocationStore

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A ~1 ms ONNX model (64x512 by 512x512 MatMul, ReLU) that needs no torch export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 512])], initializer=[weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_workload_names_split_on_plus_outside_architectures():
    mix = WorkloadMix.parse(f"cpu-x2+nb201:{CELL}@torch-t2+cache-x1")
    assert [kind for kind, _ in mix.items] == ["cpu", "model", "cache"]
    assert mix.items[1][1] == ModelSpec(f"nb201:{CELL}", "torch", 2)
    assert mix.name == f"cpu-x2+nb201:{CELL}@torch-t2+cache-x1" and mix.family == "mixed"
    corunners = mix.corunners(0.5, stagger_s=0.25)
    assert [c.kind for c in corunners] == ["cpu", "cpu", "model", "cache"]
    assert [c.start_s for c in corunners] == [0.0, 0.25, 0.5, 0.75] and {c.intensity for c in corunners} == {0.5}
    assert WorkloadMix.parse("membw-x2").family == "membw"
    first, second = (scenarios_from([f"nb201:{CELL}"], ["cpu-x1"], [1.0])[0] for _ in range(2))
    assert first.scenario_id == second.scenario_id and first.target.label.endswith("@ort-t1")


@pytest.mark.parametrize("targets, workloads, intensities, message", [
    ([f"nb201:{CELL}@gpu-t1"], ["cpu-x1"], [1.0], "bad runtime part"),
    ([f"nb201:{CELL}@ort-t1"], ["gpu-x1"], [1.0], "bad co-runner 'gpu-x1'"),
    ([f"nb201:{CELL}@ort-t1"], ["cpu-x0"], [1.0], "processes must be between 1"),
    (["onnx:/no/such/model.onnx@ort-t1"], ["cpu-x1"], [1.0], "does not exist"),
    ([f"nb201:{CELL}@ort-t1"], ["cpu-x1"], [1.5], "intensity (duty cycle) must be in (0, 1]"),
    (["nb201:|bad|@ort-t1"], ["cpu-x1"], [1.0], "nb201"),
    ([f"nb201:{CELL}@ort-t1"], ["cpu-x1"], [1.0, "spread"], "placement must be one of free, pinned, got 'spread'"),
])
def test_bad_specs_raise_one_line_errors(targets, workloads, intensities, message):
    placement = intensities.pop() if isinstance(intensities[-1], str) else "free"
    with pytest.raises(HwlatError) as error:
        scenarios_from(targets, workloads, intensities, placement=placement)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_cli_bad_input_is_one_line_without_traceback(hwlat, tmp_path):
    code, out, err = hwlat("interference", "record", "--target", f"nb201:{CELL}@ort-t1", "--workload", "cpu-x1+oops",
                           "--db", str(tmp_path / "db.sqlite"))
    assert code == 2 and err.strip().startswith("error: bad co-runner 'oops'") and len(err.strip().splitlines()) == 1
    code, _, err = hwlat("interference", "record", "--target", f"nb201:{CELL}@ort-t1", "--workload", "cpu-x1",
                         "--placement", "spread", "--db", str(tmp_path / "db.sqlite"))
    assert code == 2 and err.strip() == "error: placement must be one of free, pinned, got 'spread'"
    code, _, err = hwlat("interference", "record", "--target", f"nb201:{CELL}@ort-t1", "--workload", "cpu-x1",
                         "--perf-events", "LLC-load-misses,bogus", "--db", str(tmp_path / "db.sqlite"))
    assert code == 2 and err.strip().startswith("error: perf event 'bogus' is unknown")
    assert not (tmp_path / "db.sqlite").exists()  # refused before the store is made
    code, _, err = hwlat("interference", "export", "--out", str(tmp_path / "out"),
                         "--db", str(tmp_path / "none.sqlite"))
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    code, _, err = hwlat("interference", "import", str(tmp_path / "nothing"), "--db", str(tmp_path / "db.sqlite"))
    assert code == 2 and err.strip().endswith("is not a co-location dataset: missing scenarios.csv, metrics.parquet")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("scenarios.csv", "metrics.parquet"):  # a shipped dataset without its inferences
        (partial / name).write_bytes((PROJECT_ROOT / "data" / "interference-cpu-pinned-b" / name).read_bytes())
    code, _, err = hwlat("interference", "import", str(partial), "--db", str(tmp_path / "partial.sqlite"))
    assert code == 2 and err.strip().endswith("missing inferences.parquet") and not (tmp_path / "partial.sqlite").exists()


def test_placement_is_part_of_the_scenario_and_free_keeps_the_dataset_ids():
    free, pinned = (scenarios_from([f"nb201:{CELL}@torch-t1"], ["cpu-x2"], [1.0], placement=p)[0]
                    for p in ("free", "pinned"))
    assert free.placement == "free" and pinned.placement == "pinned" and free.scenario_id != pinned.scenario_id
    assert free.cpus([0, 1]) == (None, (None, None))
    assert pinned.cpus([0, 1]) == ((0,), ((1,), (0,)))  # round-robin from core 1: the second shares the target's core
    assert pinned_cpus(2, [1, 2, 1], [0, 1, 2, 3]) == ((0, 1), ((1,), (2, 3), (0,)))
    assert pinned_cpus(4, [3], [5, 7]) == ((5, 7), ((5, 7),))  # never more cores than there are
    shipped = PROJECT_ROOT / "data" / "interference-cpu" / "scenarios.csv"
    if shipped.is_file():  # ids of scenarios recorded before placements existed are unchanged
        rows = pd.read_csv(shipped, dtype={"scenario_id": str}).head(5)
        short = {"onnxruntime": "ort", "torch": "torch", "tvm": "tvm"}
        for row in rows.itertuples():
            again = scenarios_from([f"{row.target}@{short[row.target_runtime]}-t{row.target_threads}"],
                                   [row.workload], [row.intensity], stagger_s=row.stagger_s, phase_s=row.phase_s,
                                   interval_s=row.interval_s)[0]
            assert again.scenario_id == row.scenario_id


def _threads_affinity(pid: int) -> set[tuple[int, ...]]:
    """The distinct CPU sets of every thread of process `pid`."""
    return {tuple(sorted(os.sched_getaffinity(int(tid)))) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two usable cores")
def test_pinned_processes_run_on_their_cores_with_passive_threads(tiny_onnx):
    scenario = scenarios_from([f"onnx:{tiny_onnx}@ort-t1"], [f"cpu-x1+onnx:{tiny_onnx}@ort-t1"], [1.0],
                              placement="pinned")[0]
    target_cpus, corunner_cpus = scenario.cpus(sorted(os.sched_getaffinity(0)))
    processes = _Processes()
    try:
        target, corunners = processes.ready(scenario)
        assert target.facts["cpus"] == list(target_cpus)  # what the child reports after loading the engine
        for child, cpus in [(target.child, target_cpus), *zip(corunners, corunner_cpus)]:
            assert _threads_affinity(child.pid) == {cpus}, child.label  # engine threads inherit the affinity
            environ = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
            assert b"OMP_WAIT_POLICY=PASSIVE" in environ
        free = scenarios_from([f"onnx:{tiny_onnx}@ort-t1"], ["cpu-x1"], [1.0])[0]
        target, corunners = processes.ready(free)  # the pinned processes are not reused for a free scenario
        everywhere = tuple(sorted(os.sched_getaffinity(0)))
        assert target.facts["cpus"] == list(everywhere) and _threads_affinity(corunners[0].pid) == {everywhere}
    finally:
        processes.close()


def test_onnxruntime_without_spinning_is_a_setting():
    from hwlat.profilers.runtimes import get_runtime

    spinning, passive = get_runtime("onnxruntime", 2), get_runtime("onnxruntime", 2, spinning=False)
    assert "spinning" not in spinning.settings() and spinning.platform_suffix() == ""  # existing keys unchanged
    assert passive.settings()["spinning"] is False and passive.platform_suffix() == "/nospin"


def test_stores_without_placement_or_time_slice_are_upgraded(tmp_path):
    import sqlite3

    db = tmp_path / "db.sqlite"
    with ColocationStore(db) as store:
        store.add_scenario(ROW, {}, {})
    with sqlite3.connect(db) as connection:  # the table as it was before placements and time slices existed
        connection.execute("ALTER TABLE colocation_scenarios DROP COLUMN placement")
        connection.execute("ALTER TABLE colocation_scenarios DROP COLUMN time_slice_ms")
    with ColocationStore(db, create=False) as store:
        assert store.scenarios_frame()["placement"].tolist() == ["free"]
        store.add_scenario({**ROW, "scenario_id": "s2", "placement": "pinned", "time_slice_ms": 4.0}, {}, {})
        frame = store.scenarios_frame()
        assert frame["placement"].tolist() == ["free", "pinned"]
        assert frame["time_slice_ms"].isna().tolist() == [True, False] and frame["time_slice_ms"].iloc[1] == 4.0


def _command(process: psutil.Process) -> str:
    """The command line of `process`, empty once it has ended (or is a zombie not yet reaped)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _children_but_the_resource_tracker() -> set[int]:
    """Child pids, without the helper process multiprocessing keeps for the rest of the session."""
    return {p.pid for p in psutil.Process().children(recursive=True) if "resource_tracker" not in _command(p)}


def test_time_slice_probe_measures_whole_kernel_ticks():
    before = _children_but_the_resource_tracker()
    measured = measure_time_slice_ms(seconds=0.3)
    assert 0.1 < measured < 200
    tick = kernel_tick_ms()
    if tick is not None:  # the CPU-bound competitor is preempted at a tick (no high-resolution scheduler tick)
        ticks = measured / tick
        assert round(ticks) >= 1 and abs(ticks - round(ticks)) < 0.15, (measured, tick)
    assert _children_but_the_resource_tracker() <= before  # probe and spinner are gone
    with pytest.raises(HwlatError, match=f"on CPU {os.cpu_count() + 3}: this process may use"):
        measure_time_slice_ms(os.cpu_count() + 3)
    with pytest.raises(HwlatError, match="needs a positive duration, got 0 s"):
        measure_time_slice_ms(seconds=0)


def test_sampling_follows_the_interval():
    t0 = time.perf_counter() + 0.02
    rows = sample_series(t0, duration_s=1.0, interval_s=0.05)
    assert [r["step"] for r in rows] == list(range(20))
    lag = np.array([r["t_s"] - (r["step"] + 1) * 0.05 for r in rows])
    assert (lag >= 0).all() and np.median(lag) < 0.005 and lag.max() < 0.05
    assert rows[-1]["t_s"] < 1.0 + 0.03  # absolute deadlines: late samples do not push the later ones back
    for row in rows:
        assert 0 <= row["cpu_util_mean"] <= row["cpu_util_max"] <= 1
        assert row["ctx_switches_per_s"] > 0 and row["interrupts_per_s"] >= 0 and 0 < row["mem_used_frac"] < 1
        assert f"cpu{psutil.cpu_count() - 1}_util" in row


#: a scenario row as the recorder writes it (without `placement`, as rows were before placements existed)
ROW = {"scenario_id": "s1", "workload": "cpu-x1", "workload_family": "cpu", "target": "t", "target_runtime": "torch",
       "target_threads": 1, "corunners": [], "n_corunner_procs": 1, "intensity": 1.0, "stagger_s": 0.0,
       "phase_s": 1.0, "interval_s": 0.1, "isolated_median_ms": 1.0, "isolated_p90_ms": 1.0, "isolated_p99_ms": 1.0,
       "isolated_after_median_ms": 1.0, "colocated_median_ms": 2.0, "colocated_p90_ms": 2.0,
       "colocated_p99_ms": 2.0, "colocated_n": 3, "slowdown": 2.0, "slowdown_p90": 2.0, "slowdown_p99": 2.0,
       "disturbed": 0, "attempts": 1, "background_util": 0.0, "runtime_version": "x", "device_id": "d"}


def test_a_failing_scenario_leaves_no_half_record(tmp_path):
    store = ColocationStore(tmp_path / "db.sqlite")
    row = ROW
    with pytest.raises(ValueError):  # the series is written after the scenario row, in the same transaction
        store.add_scenario(row, {"colocated": ([0.1], [2.0])}, {"colocated": [{"step": "not a step", "t_s": 0.1}]})
    assert store.completed_scenarios("d") == set() and store.scenarios_frame().empty
    assert store.add_scenario(row, {"colocated": ([0.1], [2.0])}, {"colocated": [{"step": 0, "t_s": 0.1, "m": 1.0}]})
    assert not store.add_scenario(row, {}, {})  # already stored for this device
    assert store.series_frame()[["step", "m"]].values.tolist() == [[0, 1.0]]


@pytest.mark.slow
def test_record_resume_export_and_load(tmp_path, tiny_onnx):
    db = tmp_path / "db.sqlite"
    scenarios = scenarios_from([f"onnx:{tiny_onnx}@ort-t1"], ["cpu-x1", "cache-x1+membw-x1"], [1.0],
                               phase_s=0.4, interval_s=0.05)
    before = _children_but_the_resource_tracker()
    pinned = scenarios_from([f"onnx:{tiny_onnx}@ort-t1"], ["cpu-x1"], [1.0], phase_s=0.4, interval_s=0.05,
                            placement="pinned")
    scenarios = scenarios + pinned
    first = record_colocation(scenarios[:1], store=db, tolerance=10.0, quiet_wait_s=0)
    assert (first.recorded, first.skipped, first.failed) == (1, 0, []) and first.time_slice_ms > 0
    assert _children_but_the_resource_tracker() <= before  # all targets and co-runners stopped
    again = record_colocation(scenarios, store=db, tolerance=10.0, quiet_wait_s=0)
    assert (again.recorded, again.skipped) == (2, 1)  # only the scenarios not stored yet

    counts = export_colocation_dataset(db, tmp_path / "dataset")
    frame, metrics = load_colocation_dataset(tmp_path / "dataset")
    assert counts["scenarios"] == len(frame) == 3 and set(frame["scenario_id"]) == {s.scenario_id for s in scenarios}
    placements = frame.set_index("scenario_id")["placement"]
    assert placements[pinned[0].scenario_id] == "pinned" and (placements.drop(pinned[0].scenario_id) == "free").all()
    assert set(frame["time_slice_ms"]) == {first.time_slice_ms, again.time_slice_ms}  # measured once per call
    # the mean slowdown: the co-located mean latency over the isolated median, from the inferences
    inferences = pd.read_parquet(tmp_path / "dataset" / "inferences.parquet")
    means = inferences.groupby(["scenario_id", "phase"])["latency_ms"].mean().unstack()
    np.testing.assert_allclose(frame["slowdown_mean"],
                               frame["scenario_id"].map(means["colocated"]) / frame["isolated_median_ms"], rtol=1e-6)
    np.testing.assert_allclose(frame["isolated_mean_ms"], frame["scenario_id"].map(means["isolated_before"]), rtol=1e-6)
    frame.drop(columns=["placement", *MEAN_COLUMNS]).to_csv(tmp_path / "dataset" / "scenarios.csv", index=False)
    older = load_colocation_dataset(tmp_path / "dataset")[0]
    assert (older["placement"] == "free").all()  # older exports: free, and the means derived from the inferences
    pd.testing.assert_frame_equal(older[list(MEAN_COLUMNS)], frame[list(MEAN_COLUMNS)])
    assert set(frame["workload"]) == {"cpu-x1", "cache-x1+membw-x1"} and set(frame["target"]) == {"onnx:tiny"}
    assert (frame["slowdown"] == frame["colocated_median_ms"] / frame["isolated_median_ms"]).all()
    assert frame.loc[frame["workload"] != "cpu-x1", "n_corunner_procs"].eq(2).all()
    assert json.loads(frame["corunners"].iloc[0])[0]["kind"] == "cpu"
    assert len(metrics) == 3 * 4 * 8 and metrics["cpu_util_mean"].dtype == np.float32
    by_phase = metrics.groupby("phase")["target_inferences"].sum()
    assert by_phase["corunners"] == 0 and (by_phase.drop("corunners") > 0).all()
    assert len(inferences) == counts["inferences"] and set(inferences["phase"]) == {"isolated_before", "colocated",
                                                                                   "isolated_after"}
    card = (tmp_path / "dataset" / "README.md").read_text()
    assert "3 scenarios" in card and "2 free, 1 pinned" in card and "for 3 of 3 scenarios" in card

    # an exported dataset imported into another store exports again unchanged, and extends: a rerun records only
    # what it lacks
    partial = tmp_path / "partial"
    export_colocation_dataset(db, partial)
    for name, part in (("scenarios.csv", frame), ("metrics.parquet", metrics), ("inferences.parquet", inferences)):
        kept = part[part["scenario_id"] != pinned[0].scenario_id]
        if name.endswith(".csv"):
            kept.to_csv(partial / name, index=False)
        else:
            kept.to_parquet(partial / name)
    copy = tmp_path / "copy.sqlite"
    assert import_colocation_dataset(partial, copy)["imported"] == 2
    assert import_colocation_dataset(tmp_path / "dataset", copy) == {"db": f"sqlite:///{copy}", "imported": 1,
                                                                     "skipped": 2}
    assert record_colocation(scenarios, store=copy, tolerance=10.0, quiet_wait_s=0).recorded == 0
    export_colocation_dataset(copy, tmp_path / "again")
    again_frame, again_metrics = load_colocation_dataset(tmp_path / "again")
    pd.testing.assert_frame_equal(again_frame.drop(columns="placement"), frame.drop(columns="placement"))
    pd.testing.assert_frame_equal(again_metrics, metrics)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again" / "inferences.parquet"), inferences)


def test_recorded_perf_counters_reach_the_dataset_and_the_models(tmp_path, tiny_onnx):
    """Software perf events count on any Linux: the recorder samples them with the metrics, the export keeps
    them, the data card names them and the models take them as metrics."""
    from hwlat.interference import InterferenceData

    db = tmp_path / "db.sqlite"
    scenarios = scenarios_from([f"onnx:{tiny_onnx}@ort-t1"], ["cpu-x1"], [1.0], phase_s=0.4, interval_s=0.1)
    result = record_colocation(scenarios, store=db, tolerance=10.0, quiet_wait_s=0,
                               perf_events="task-clock,context-switches")
    assert result.recorded == 1 and result.perf_events == ["task-clock", "context-switches"]
    export_colocation_dataset(db, tmp_path / "dataset")
    _, metrics = load_colocation_dataset(tmp_path / "dataset")
    cpus = psutil.cpu_count()  # task-clock counts every online CPU, system-wide
    assert len(metrics) == 4 * 4 and (metrics["perf_context_switches_per_s"] > 0).all()
    np.testing.assert_allclose(metrics["perf_task_clock_per_s"], cpus * 1e9, rtol=0.1)
    card = (tmp_path / "dataset" / "README.md").read_text()
    assert "sampled with perf_event_open" in card and "`perf_task_clock_per_s`" in card
    assert {"perf_task_clock_per_s", "perf_context_switches_per_s"} <= set(
        InterferenceData.load(tmp_path / "dataset").metric_names)


def test_load_names_missing_columns(tmp_path):
    with pytest.raises(HwlatError, match="missing scenarios.csv, metrics.parquet"):
        load_colocation_dataset(tmp_path)
    pd.DataFrame({"scenario_id": ["a"]}).to_csv(tmp_path / "scenarios.csv", index=False)
    pd.DataFrame({"scenario_id": ["a"], "phase": ["colocated"]}).to_parquet(tmp_path / "metrics.parquet")
    with pytest.raises(HwlatError, match=r"scenarios.csv: missing column\(s\) workload, workload_family"):
        load_colocation_dataset(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)])
def test_interrupted_or_killed_recorder_leaves_no_child(tmp_path, tiny_onnx, signum, code):
    """Ctrl-C stops the children cleanly; after SIGKILL they die by the parent-death signal / end of input."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [sys.executable, "-m", "hwlat", "interference", "record", "--target", f"onnx:{tiny_onnx}@ort-t1",
               "--workload", "cpu-x1+membw-x1", "--phase", "4", "--quiet-wait", "0",
               "--db", str(tmp_path / "db.sqlite")]
    recorder = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        children: list[int] = []
        while time.monotonic() < deadline and len(children) < 3:  # the target and two co-runners
            children = [p.pid for p in psutil.Process(recorder.pid).children(recursive=True)]
            time.sleep(0.1)
        assert len(children) == 3, f"recorder started {len(children)} children"
        time.sleep(2.0)  # loaded and into the first phases
        recorder.send_signal(signum)
        _, err = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
    assert recorder.returncode == code, err
    if signum == signal.SIGINT:
        assert b"interrupted: everything measured so far is stored" in err
    deadline = time.monotonic() + 5  # killed children are reaped by init a moment later
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(children) == []
    assert ColocationStore(tmp_path / "db.sqlite").scenarios_frame().empty  # nothing half-recorded


@pytest.mark.slow
def test_sigterm_stops_every_child(tmp_path, tiny_onnx):
    scenario = scenarios_from([f"onnx:{tiny_onnx}@ort-t1"], ["cache-x1"], [1.0], phase_s=5.0)
    seen: list[int] = []

    def terminate_when_running() -> None:
        while len(seen) < 2 and not stop.is_set():
            seen[:] = [p.pid for p in psutil.Process().children(recursive=True)
                       if "_colocation_child" in _command(p)]
            time.sleep(0.05)
        time.sleep(2.5)
        if not stop.is_set():  # never signal pytest itself once recording is over
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    killer = threading.Thread(target=terminate_when_running, daemon=True)
    killer.start()
    try:
        with pytest.raises(KeyboardInterrupt):  # SIGTERM becomes an interrupt while recording
            record_colocation(scenario, store=tmp_path / "db.sqlite", quiet_wait_s=0)
    finally:
        stop.set()
        killer.join()
    assert len(seen) == 2 and _alive(seen) == []
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored


def test_a_target_that_cannot_load_fails_its_scenario_and_stops_the_co_runners(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    before = _children_but_the_resource_tracker()
    result = record_colocation(scenarios_from([f"onnx:{broken}@ort-t1"], ["cpu-x1"], [1.0]),
                               store=tmp_path / "db.sqlite", quiet_wait_s=0)
    assert result.recorded == 0 and len(result.failed) == 1
    assert "broken.onnx" in result.failed[0][1] and "\n" not in result.failed[0][1]
    assert _children_but_the_resource_tracker() <= before
