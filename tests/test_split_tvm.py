"""Split stages on Apache TVM: `tvm/t<threads>[@cpus]` sides, TVM segments against ONNX Runtime, a real run."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwlat._errors import HwlatError
from hwlat.split import Link, SplitSession, find_cuts, parse_side, static_shapes
from hwlat.split._api import PART_PROTOCOL, RUN_PROTOCOL
from hwlat.split._models import example_inputs
from hwlat.split._segments import Segmenter, segment_runner, tensor_values
from hwlat.split._sides import Side
from tests.test_split import branchy_model

pytest.importorskip("tvm")

QUICK = {"protocol": replace(PART_PROTOCOL, time_budget_s=0.1),
         "run_protocol": replace(RUN_PROTOCOL, time_budget_s=0.3)}


def conv_model(path) -> None:
    """x (1x8x16x16) -> Conv 3x3 -> Relu r1 -> Conv 3x3 -> Relu y: convolutions, where untuned TVM is slow."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)
               for name, shape in (("w1", (16, 8, 3, 3)), ("w2", (16, 16, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["y"], name="relu2")]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])],
                              initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_tvm_sides_parse_round_trip_and_bad_ones_are_refused(monkeypatch):
    side = parse_side("tvm/t1@0")
    assert (side.runtime, side.threads, side.cpus, side.optimization, side.spec) == ("tvm", 1, (0,), "all", "tvm/t1@0")
    assert parse_side("tvm/t2").spec == "tvm/t2"
    assert parse_side(parse_side("tvm/t2@0,1").spec) == Side(2, cpus=(0, 1), runtime="tvm")
    assert parse_side("onnxruntime/t1/opt-basic@1").runtime == "onnxruntime" == Side().runtime
    assert parse_side("tvm/t1") != parse_side("onnxruntime/t1")  # stages of different runtimes are timed apart
    for bad, message in (("tvm/t1/opt-basic", "tvm stages have no /opt- level"),
                         ("torch/t1", "split stages run ONNX segments with onnxruntime or tvm, not 'torch'"),
                         ("tvm/t0", "threads must be >= 1"), ("tvm/t1@999", "not available"),
                         ("tvm", "is not RUNTIME")):
        with pytest.raises(HwlatError, match=message) as error:
            parse_side(bad)
        assert "\n" not in str(error.value)
    with pytest.raises(HwlatError, match="no optimisation level"):
        Side(runtime="tvm", optimization="basic")
    monkeypatch.setattr("hwlat.split._sides.find_spec", lambda name: None)  # a machine without TVM
    with pytest.raises(HwlatError, match=r"tvm stages need apache-tvm: pip install 'hwlat\[tvm\]'"):
        parse_side("tvm/t1@0")
    assert parse_side("onnxruntime/t1").runtime == "onnxruntime"


def test_tvm_that_cannot_be_imported_is_a_one_line_error(monkeypatch):
    from hwlat.profilers.runtimes._tvm import require_tvm

    monkeypatch.setitem(sys.modules, "tvm", None)  # `import tvm` now raises ImportError
    with pytest.raises(HwlatError, match=r"tvm: needs apache-tvm: pip install 'hwlat\[tvm\]'") as error:
        require_tvm()
    assert "\n" not in str(error.value)


def test_tvm_segments_match_onnxruntime_across_two_tensor_cuts():
    model = static_shapes(branchy_model())
    cuts = {cut.after: cut for cut in find_cuts(model, max_tensors=2)}
    values = tensor_values(model, example_inputs(model), [name for cut in cuts.values() for name in cut.tensors])
    segmenter = Segmenter(model)
    tvm_side, ort_side = parse_side("tvm/t1"), parse_side("onnxruntime/t1")
    # 1 -> 2 tensors (x passes through), 2 -> 2, 2 -> 1 (through fp16 and back); the outputs in the cut's order
    for start, end in (("input", "relu"), ("relu", "mul"), ("mul", "float")):
        assert len(cuts[start].tensors) + len(cuts[end].tensors) >= 3
        inputs, outputs = list(cuts[start].tensors), list(cuts[end].tensors)
        segment = segmenter.segment(cuts[start], cuts[end])
        arrays = [values[name] for name in inputs]
        on_tvm = segment_runner(segment, inputs, outputs, tvm_side)(arrays)
        on_ort = segment_runner(segment, inputs, outputs, ort_side)(arrays)
        assert len(on_tvm) == len(outputs)
        for name, got, want in zip(outputs, on_tvm, on_ort):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=f"{start} -> {end}: {name}")
            np.testing.assert_allclose(got, values[name], rtol=1e-3, atol=1e-3)
    # the arrays come back in the order asked for, not the graph's
    segment = segmenter.segment(cuts["relu"], cuts["mul"])
    names = list(cuts["mul"].tensors)[::-1]
    flipped = segment_runner(segment, list(cuts["relu"].tensors), names, tvm_side)(
        [values[name] for name in cuts["relu"].tensors])
    for name, got in zip(names, flipped):
        np.testing.assert_allclose(got, values[name], rtol=1e-3, atol=1e-3)
    assert segment_runner(None, ["x"], ["x"], tvm_side)([values["x"]])[0] is values["x"]  # an empty segment forwards


def test_real_run_with_a_tvm_server_on_loopback(tmp_path):
    path = tmp_path / "convs.onnx"
    conv_model(path)
    link = Link(100e6, rtt_ms=2.0)
    with SplitSession(f"onnx:{path}", [parse_side("onnxruntime/t1@1"), parse_side("tvm/t1@0")], **QUICK) as session:
        plan = session.plan_after("relu1")  # device: conv1 + relu (ORT); server: conv2 + relu (TVM)
        predicted = session.evaluate(plan, link)
        measured = session.verify(plan, link, predicted, seconds=0.3)
        cut, last = plan.positions[0], len(session.cuts) - 1
        on_tvm, on_ort = session.segment_ms(1, cut, last), session.segment_ms(0, cut, last)
        device, server = (worker.call("describe") for worker in session.workers)
    assert server["runtime"] == "tvm" and server["spec"] == "tvm/t1@0" and (cut, last) in server["segments"]
    assert server["threads_env"]["TVM_NUM_THREADS"] == "1" and server["tvm_loaded"] and not server["tvm_preloaded"]
    assert device["runtime"] == "onnxruntime" and not device["tvm_loaded"]
    assert on_tvm > 3 * on_ort  # the same segment, untuned TVM against ONNX Runtime: TVM really ran
    assert measured["measured_latency_ms"] >= on_tvm + link.wire_ms(predicted["bytes"])
    assert measured["measured_latency_ms"] == pytest.approx(predicted["latency_ms"], rel=0.5)


def test_tvm_records_on_sides_are_checked_once_and_only_for_tvm(tmp_path):
    from tests.test_tvm_records import ARCH, write_records

    from hwlat.profilers import Workload
    from hwlat.profilers.runtimes._tvm import tvm_target
    from hwlat.split._sides import with_tvm_records

    write_records(Workload("nb201", ARCH, batch_size=1), tvm_target(None, 1), tmp_path)
    sides = with_tvm_records([parse_side("onnxruntime/t1"), parse_side("tvm/t1@0")], f"{tmp_path}/./")
    assert sides[0] == parse_side("onnxruntime/t1") and sides[1].tuning_records == str(tmp_path.resolve())
    assert sides[1] != parse_side("tvm/t1@0") and sides[1].spec == "tvm/t1@0"  # tuned and untuned are timed apart
    for call, message in ((lambda: with_tvm_records([parse_side("onnxruntime/t1")] * 2, str(tmp_path)),
                           "no side is tvm"),
                          (lambda: with_tvm_records([parse_side("tvm/t1")], str(tmp_path / "missing")),
                           "does not exist"),
                          (lambda: Side(runtime="onnxruntime", tuning_records=str(tmp_path)), "for tvm sides")):
        with pytest.raises(HwlatError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HwlatError, match="lacks database_workload.json, database_tuning_record.json"):
        with_tvm_records([parse_side("tvm/t1")], str(tmp_path / "empty"))


def test_records_of_another_model_stop_a_tvm_stage_at_start(tmp_path):
    from tests.test_tvm_records import ARCH, write_records

    from hwlat.profilers import Workload
    from hwlat.profilers.runtimes._tvm import tvm_target

    write_records(Workload("nb201", ARCH, batch_size=1), tvm_target(None, 1), tmp_path)  # NB201's kernels
    path = tmp_path / "convs.onnx"
    conv_model(path)
    side = replace(parse_side("tvm/t1@0"), tuning_records=str(tmp_path))
    with pytest.raises(HwlatError, match=r"stage on tvm/t1@0: tvm: tuning records in .* match none of the 2 kernels "
                                         r"of .*convs.onnx at batch 1") as error:
        SplitSession(f"onnx:{path}", [parse_side("onnxruntime/t1@1"), side], **QUICK)
    assert "\n" not in str(error.value)


def test_tvm_records_without_a_tvm_side_or_database_are_refused_by_the_command(monkeypatch, capsys, tmp_path):
    from tests.test_split_cli import run_main

    for args, message in ((["--tvm-records", str(tmp_path)], "no side is tvm"),
                          (["--server", "tvm/t1@0", "--tvm-records", str(tmp_path)], "lacks database_workload.json"),
                          (["--server", "tvm/t1@0", "--tvm-records", str(tmp_path / "gone")], "does not exist")):
        code, out, err = run_main(monkeypatch, capsys, "split", "--model", "resnet:18", *args)
        assert code == 2 and message in err and err.count("\n") == 1 and not out
