"""`hwlat tvm-tune` and tuned TVM split stages, with records from a real (tiny) MetaSchedule tuning.

The module tunes the two-convolution model of test_split_tvm once for 2 trials (about 35 s here): its first kernel
gets records, the other none, so matching is partial on purpose.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest

from hwlat.split import Link, SplitSession, find_cuts, parse_side, static_shapes
from hwlat.split._models import example_inputs
from hwlat.split._segments import Segmenter, input_shapes, segment_runner, tensor_values
from tests.test_split_cli import hwlat, run_main
from tests.test_split_tvm import QUICK, conv_model

pytest.importorskip("tvm")

from hwlat.profilers.runtimes import TvmRuntime  # noqa: E402
from hwlat.profilers.runtimes._tvm import check_tuning_records, compile_onnx, tvm_target  # noqa: E402

TUNE = ["--trials", "2", "--trials-per-round", "2", "--json"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """(model path, work_dir, the command's JSON answer) of `hwlat tvm-tune` on the two-convolution model."""
    folder = tmp_path_factory.mktemp("tune")
    model = folder / "convs.onnx"
    conv_model(model)
    work = folder / "records"
    answer = hwlat("tvm-tune", "--model", f"onnx:{model}", "--work-dir", str(work), *TUNE)
    assert answer.returncode == 0, answer.stderr
    return model, work, json.loads(answer.stdout)


def vm_output(executable, array: np.ndarray) -> np.ndarray:
    import tvm
    from tvm import relax

    return relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(array, tvm.cpu())).numpy()


def test_tune_writes_a_work_dir_that_tvm_applies(tuned):
    model, work, result = tuned
    assert (result["tasks"], result["kernels"], result["scheduled_kernels"]) == (2, 2, 1)  # 2 trials: 1 kernel
    assert result["records_before"] == 0 < result["records"] <= 2 and result["work_dir"] == str(work)
    assert sorted(ms is None for ms in result["best_ms"].values()) == [False, True]
    assert check_tuning_records(str(work)) == str(work) and TvmRuntime(tuning_records=str(work)).tuning_records
    graph = static_shapes(onnx.load(str(model)))
    feeds = example_inputs(graph)
    executable = compile_onnx(graph, input_shapes(graph), tvm_target(None, 1), str(work))  # 1 of 2 kernels: accepted
    want = tensor_values(graph, feeds, ["y"])["y"]
    np.testing.assert_allclose(vm_output(executable, feeds["x"]), want, rtol=1e-4, atol=1e-4)


def test_records_apply_to_split_segments_partly_and_outputs_match_onnxruntime(tuned):
    model, work, _ = tuned
    graph = static_shapes(onnx.load(str(model)))
    cuts = {cut.after: cut for cut in find_cuts(graph)}
    values = tensor_values(graph, example_inputs(graph), ["x", "r1", "y"])
    segmenter, side = Segmenter(graph), replace(parse_side("tvm/t1"), tuning_records=str(work))
    counts = []
    for start, end in (("input", "relu1"), ("relu1", "relu2")):
        inputs, outputs = list(cuts[start].tensors), list(cuts[end].tensors)
        runner = segment_runner(segmenter.segment(cuts[start], cuts[end]), inputs, outputs, side)
        counts.append((runner.scheduled, runner.kernels))
        got = runner([values[name] for name in inputs])
        np.testing.assert_allclose(got[0], values[outputs[0]], rtol=1e-4, atol=1e-4, err_msg=f"{start} -> {end}")
    assert sorted(counts) == [(0, 1), (1, 1)]  # each segment is one convolution; only one was tuned


def test_a_tuned_tvm_server_runs_for_real_and_beats_the_untuned_build(tuned):
    model, work, _ = tuned
    tuned_side = replace(parse_side("tvm/t1@0"), tuning_records=str(work))
    link = Link(100e6, rtt_ms=2.0)
    with SplitSession(f"onnx:{model}", [parse_side("tvm/t1@1"), tuned_side], **QUICK) as session:
        plan = session.plan_after("relu1")  # device: conv1 + relu on untuned TVM; server: conv2 + relu, tuned
        cut, last = plan.positions[0], len(session.cuts) - 1
        segments = {(session.cuts[a].index, session.cuts[b].index): (session.segment_ms(0, a, b),
                                                                     session.segment_ms(1, a, b))
                    for a, b in ((0, cut), (cut, last))}
        predicted = session.evaluate(plan, link)
        measured = session.verify(plan, link, predicted, seconds=0.3)
        device, server = (worker.call("describe") for worker in session.workers)
    assert server["tvm_records"] == str(work) and device["tvm_records"] is None and device["model_kernels"] is None
    assert server["model_kernels"] == (1, 2) and sorted(server["segment_kernels"].values()) == [(0, 1), (1, 1)]
    for key, (untuned_ms, tuned_ms) in segments.items():
        print(f"segment {key}: untuned {untuned_ms:.3f} ms, tuned {tuned_ms:.3f} ms, {server['segment_kernels'][key]}")
        if server["segment_kernels"][key] == (1, 1):  # the convolution that got records: a schedule drawn at random
            assert tuned_ms < 0.8 * untuned_ms  # in 2 trials: about 2x faster here, 1.99x in one run
    assert measured["measured_latency_ms"] == pytest.approx(predicted["latency_ms"], rel=0.5)


def test_a_rerun_resumes_adding_records_for_the_untuned_kernel(tuned, tmp_path):
    _, work, first = tuned
    model = tmp_path / "convs.onnx"
    conv_model(model)
    again = tmp_path / "records"
    shutil.copytree(work, again)
    answer = hwlat("tvm-tune", "--model", f"onnx:{model}", "--work-dir", str(again), *TUNE)
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout)
    assert result["records_before"] == first["records"] < result["records"]  # kept, then added to
    assert result["scheduled_kernels"] == result["kernels"] == 2  # the kernel without records went first


def test_split_applies_tvm_records_and_reports_them(tuned):
    model, work, _ = tuned
    answer = hwlat("split", "--model", f"onnx:{model}", "--server", "tvm/t1@0", "--tvm-records", str(work),
                   "--cut", "relu1", "--bandwidth", "1Gbps", "--time-budget", "0.1", "--run-budget", "0.3", "--json")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["settings"]["tvm_records"] == {"s1": str(work)}


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "--trials must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--builder-timeout", "0"], "--builder-timeout must be > 0"),
    (["--model", "onnx:/nonexistent.onnx"], "does not exist"),
])
def test_tune_bad_inputs_are_one_line_errors(monkeypatch, capsys, tmp_path, args, message):
    base = {"--model": "resnet:18", "--work-dir": str(tmp_path / "new")}
    base.update(dict(zip(args[::2], args[1::2])))
    code, out, err = run_main(monkeypatch, capsys, "tvm-tune", *[part for item in base.items() for part in item])
    assert code == 2 and message in err and err.count("\n") == 1 and not out
    assert not (tmp_path / "new").exists()  # nothing created before the inputs are valid


def test_tune_refuses_a_folder_that_is_no_metaschedule_work_dir(monkeypatch, capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_main(monkeypatch, capsys, "tvm-tune", "--model", "resnet:18", "--work-dir", str(tmp_path))
    assert code == 2 and "holds other files and no MetaSchedule database" in err and err.count("\n") == 1
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "model.onnx").write_text("")
    code, _, err = run_main(monkeypatch, capsys, "tvm-tune", "--model", "resnet:18", "--work-dir",
                            str(tmp_path / "model.onnx"))
    assert code == 2 and "is a file, not a folder" in err
