"""A split whose device is a remote board: `tvm/t<threads>@<registered device>` sides, with a real TVM RPC tracker and
server on 127.0.0.1 standing in for the board (this CPU, so its timings can be checked against a local tvm stage)."""

from __future__ import annotations

import json

import pytest
from rpc_cluster import RpcCluster

from hwlat._errors import HwlatError
from hwlat.devices import Device, DeviceRegistry
from hwlat.devices._rpc import target_fingerprint
from hwlat.split import Link, SplitSession, analyze_split, parse_side
from hwlat.split._sides import Side
from tests.test_split_tvm import QUICK, conv_model

pytest.importorskip("tvm")
pytest.importorskip("tornado")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """(tracker address, key) of one plain TVM RPC server, the "board"; every process is killed after."""
    rpc = RpcCluster(tmp_path_factory.mktemp("rpc_logs"))
    try:
        rpc.start_tracker()
        rpc.start_server("board")
        rpc.wait_servers("board", 1)
        yield rpc.tracker, "board"
    finally:
        rpc.close()
    assert rpc.leftovers() == [], "processes of the cluster survived it"


@pytest.fixture
def registered(board) -> str:
    from hwlat.profilers.runtimes._tvm import _host_mcpu

    target = {"kind": "llvm", "mcpu": _host_mcpu(), "num-cores": 1}
    tracker, key = board
    DeviceRegistry().add(Device(name="board", kind="rpc", fingerprint=target_fingerprint(target),
                                connection={"tracker": tracker, "key": key, "target": target}))
    return "board"


def test_remote_sides_parse_and_bad_ones_are_refused(registered):
    side = parse_side(f"tvm/t1@{registered}")
    assert (side.runtime, side.threads, side.remote, side.cpus, side.spec) == ("tvm", 1, "board", None, "tvm/t1@board")
    assert parse_side(side.spec) == side and side != parse_side("tvm/t1")
    for bad, message in (("tvm/t1@nowhere", "unknown device 'nowhere'"),
                         ("tvm/t1@local", "device 'local' is not remote"),
                         ("onnxruntime/t1@board", r"a remote device runs tvm stages \(write tvm/t1@board\)")):
        with pytest.raises(HwlatError, match=message):
            parse_side(bad)
    with pytest.raises(HwlatError, match="runs tvm on no local cores"):
        Side(1, runtime="tvm", remote="board", cpus=(0,))


def test_segments_are_timed_on_the_board_and_plans_on_it_are_predicted_only(registered, tmp_path):
    model = tmp_path / "convs.onnx"
    conv_model(model)
    link = Link(100e6, rtt_ms=2.0)
    sides = [parse_side(f"tvm/t1@{registered}"), parse_side("onnxruntime/t1@0")]
    with SplitSession(f"onnx:{model}", sides, **QUICK) as session:
        plan = session.plan_after("relu1")
        cut = plan.positions[0]
        on_board = session.segment_ms(0, 0, cut)
        assert session.segment_ms(0, 0, cut, idle_ms=5.0) == on_board  # back to back on the board, cached once
        predicted = session.evaluate(plan, link)
        described = session.workers[0].call("describe")
        with pytest.raises(HwlatError, match=r"computes on remote devices \(tvm/t1@board\).*predicted, not run"):
            session.verify(plan, link, predicted)
        server_only = session.evaluate(type(plan)((0,)), link)  # nothing on the board: a real run is honest
        measured = session.verify(type(plan)((0,)), link, server_only, seconds=0.2)
    with SplitSession(f"onnx:{model}", [parse_side("tvm/t1@1"), sides[1]], **QUICK) as local:
        here = local.segment_ms(0, 0, cut)
    assert described["remote"] == "board" and described["segments"] == [(0, session.cuts[cut].index)]
    print(f"segment on the board {on_board:.3f} ms, in a local tvm stage {here:.3f} ms")
    assert 0.33 < on_board / here < 3.0  # the same untuned build on the same CPU, through RPC or in process
    assert predicted["device_ms"] == pytest.approx(on_board) and predicted["latency_ms"] > on_board
    assert measured["measured_latency_ms"] > 0


def test_cli_predicts_for_a_board_and_refuses_to_verify_it(registered, tmp_path, hwlat):
    model = tmp_path / "convs.onnx"
    conv_model(model)
    args = ["split", "--model", f"onnx:{model}", "--device", f"tvm/t1@{registered}", "--server", "onnxruntime/t1@0",
            "--bandwidth", "1Gbps", "--time-budget", "0.1", "--run-budget", "0.2"]
    code, out, err = hwlat(*args, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert [choice["bandwidth"] for choice in answer["chosen"]] == ["1Gbps"]
    assert answer["settings"]["sides"]["device"] == "tvm/t1@board"
    assert "tvm/t1@board are timed on those remote devices" in answer["settings"]["note"]
    code, out, err = hwlat(*args, "--verify")
    assert code == 2 and "predicted, not run for real: drop --verify and --race" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(HwlatError, match="predicted, not run for real"):
        analyze_split(f"onnx:{model}", [parse_side("tvm/t1@board"), parse_side("onnxruntime/t1@0")], [1e8],
                      race_rounds=3)
