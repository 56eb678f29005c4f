"""`hwlat split` in real processes: bad inputs as one-line errors, a small real run over loopback TCP."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import psutil
import numpy as np
import pytest

from hwlat._errors import HwlatError
from hwlat.split import Link, Network, SplitSession, analyze_split, parse_network, parse_side
from hwlat.split._api import CALIBRATION_SPINS_MS, CLOSE_CALL, PART_PROTOCOL, RUN_PROTOCOL, SplitResult
from conftest import render_in_chromium
from tests.test_split import branchy_model

SIDES = ["--device", "onnxruntime/t1/opt-disable@1", "--server", "onnxruntime/t1@0"]
QUICK = {"protocol": replace(PART_PROTOCOL, time_budget_s=0.1), "run_protocol": replace(RUN_PROTOCOL, time_budget_s=0.3)}


def hwlat(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwlat", *args], capture_output=True, text=True, timeout=timeout)


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`hwlat.cli.main` in this process (exit code, stdout, stderr): no interpreter start-up, no re-imports."""
    from hwlat.cli import main

    monkeypatch.setattr(sys, "argv", ["hwlat", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exited:
        code = exited.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stage_processes() -> set[int]:
    """Children of this test process, without multiprocessing's resource tracker (it lives as long as we do)."""
    return {p.pid for p in psutil.Process().children(recursive=True)
            if not any("resource_tracker" in part for part in p.cmdline())}


@pytest.fixture
def branchy(tmp_path):
    path = tmp_path / "branchy.onnx"
    branchy_model(path)
    return path


@pytest.mark.parametrize("args, message", [
    (["--model", "vgg:16"], "unknown model kind 'vgg'"),
    (["--model", "nb201"], "must be KIND:VALUE"),
    (["--model", "onnx:/nonexistent/model.onnx"], "does not exist"),
    (["--model", "resnet:7"], "resnet depth must be one of"),
    (["--model", "nb201:|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "nb201"),
    (["--model", "resnet:18", "--bandwidth", "10Mbps,fast"], "bandwidth 'fast' is not a number with a unit"),
    (["--model", "resnet:18", "--bandwidth", "0Gbps"], "must be positive"),
    (["--model", "resnet:18", "--stages", "1"], "--stages must be >= 2"),
    (["--model", "resnet:18", "--device", "torch/t1"], "onnxruntime or tvm, not 'torch'"),
    (["--model", "resnet:18", "--compression", "zip"], "unknown compression"),
    (["--model", "resnet:18", "--rtt", "-5ms"], "duration '-5ms' is not a number"),
    (["--model", "resnet:18", "--report", "/nonexistent/folder/r"], "directory /nonexistent/folder does not exist"),
    (["--model", "resnet:18", "--cut", " , "], "--cut needs at least one node"),
    (["--model", "resnet:18", "--stages", "3", "--bandwidth", "100Mbps,10Mbps/1Gbps/1Gbps/1Gbps"],
     "bandwidth 10Mbps/1Gbps/1Gbps/1Gbps: 4 link rates for 3 stages; give 1 (every link), 2 (device -> s1 -> s2;"),
    (["--model", "resnet:18", "--bandwidth", "10Mbps/1Gbps/1Gbps"], "3 link rates for 2 stages"),
    (["--model", "resnet:18", "--stages", "3", "--bandwidth", "10Mbps/0Mbps"], "bandwidth '0Mbps' must be positive"),
    (["--model", "resnet:18", "--stages", "3", "--bandwidth", "10Mbps//1Gbps"], "has an empty link rate"),
    (["--model", "resnet:18", "--batch", "0"], "--batch must be >= 1, got 0"),
    (["--model", "resnet:18", "--segment-times", "layers"], "segment times must be one of segments, blocks"),
    (["--model", "resnet:18", "--stages", "3", "--rtt", "1ms/2ms/3ms/4ms"],
     "round-trip time 1ms/2ms/3ms/4ms: 4 round-trip times for 3 stages; give 1 (every link), 2 (device -> s1 -> s2;"),
    (["--model", "resnet:18", "--rtt", "1ms//2ms"], "round-trip time '1ms//2ms' has an empty value between '/'"),
    (["--model", "resnet:18", "--rtt", "1ms/-2ms"], "duration '-2ms' is not a number"),
])
def test_bad_input_is_one_line_error(monkeypatch, capsys, args, message):
    before = stage_processes()
    code, _, err = run_main(monkeypatch, capsys, "split", *args)
    assert code == 2, err
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert stage_processes() <= before


def test_help_lists_the_options(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "split", "--help")
    assert code == 0 and "--bandwidth" in out and "--verify" in out and "--stages" in out


def test_not_an_onnx_file_in_a_real_process(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    result = hwlat("split", "--model", f"onnx:{junk}")
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert "not a readable ONNX model" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_invalid_cuts_are_refused_and_processes_stop(branchy):
    before = stage_processes()
    with SplitSession(f"onnx:{branchy}", [parse_side("onnxruntime/t1@1"), parse_side("onnxruntime/t1@0")]) as session:
        pids = {w.process.pid for w in session.workers}
        assert pids and all(psutil.pid_exists(pid) for pid in pids)
        with pytest.raises(HwlatError, match="'sigmoid' is not a valid cut point"):
            session.plan_after("sigmoid")
        with pytest.raises(HwlatError, match="must increase strictly"):
            session.costs(session.check(session.plan_after("skip")).__class__((9,)))
        plan = session.plan_after("skip")
        costs = session.costs(plan)
        assert len(costs.compute_ms) == 2 and costs.hops[0].payload_bytes > session.cuts[plan.positions[0]].nbytes
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    assert stage_processes() <= before


def test_real_two_process_run_on_loopback(branchy):
    link = Link(1e6, rtt_ms=4.0)  # 1 Mbps: a 128-byte input and its header take about 1.7 ms on the wire
    with SplitSession(f"onnx:{branchy}", [parse_side("onnxruntime/t1/opt-disable@1"),
                                          parse_side("onnxruntime/t1@0")], **QUICK) as session:
        plan = session.plan_after("input")
        predicted = session.evaluate(plan, link)
        measured = session.verify(plan, link, predicted, seconds=0.3)
        calibration = session.transport(link)
    # each calibration round trip kept both stages busy for its spin, so each receiver idled at least the other's
    assert len(calibration.idle_ms) == len(CALIBRATION_SPINS_MS) and all(
        idle >= spin + 2 * link.one_way_ms for idle, spin in zip(calibration.idle_ms, CALIBRATION_SPINS_MS))
    floor = link.wire_ms(predicted["bytes"]) + 2 * link.one_way_ms
    assert measured["measured_latency_ms"] >= floor
    assert measured["measured_latency_ms"] == pytest.approx(predicted["latency_ms"], rel=0.5)
    assert measured["measured_throughput_per_s"] <= 1e3 / link.wire_ms(session.codec(0, 0, "none")["bytes"] + 8) * 1.05


def test_a_batch_is_one_input_of_n_samples_end_to_end(branchy):
    """With a batch of 3 every crossing tensor is 3 samples (bytes x 3), the stages run batches, and the prediction
    still matches a real run."""
    link = Link(1e6, rtt_ms=2.0)
    sides = [parse_side("onnxruntime/t1/opt-disable@1"), parse_side("onnxruntime/t1@0")]
    with SplitSession(f"onnx:{branchy}", sides, batch_size=3, **QUICK) as session:
        plan = session.plan_after("skip")
        assert session.arrays(session.cuts[0])[0].shape == (3, 4, 8)
        predicted = session.evaluate(plan, link)
        measured = session.verify(plan, link, predicted, seconds=0.3)
        one_sample = session.cuts[plan.positions[0]].nbytes / 3
    assert one_sample == 4 * 8 * 4  # the fp32 tensor after `skip`, per sample
    assert measured["measured_latency_ms"] == pytest.approx(predicted["latency_ms"], rel=0.5)
    assert measured["measured_latency_ms"] >= link.wire_ms(predicted["bytes"])


def test_real_three_stage_run_paces_each_link_at_its_rate(monkeypatch, branchy):
    # s1 -> s2 at 200 kbps: a ~190-byte message takes ~7.6 ms there, 1.5 us on the device's 1 Gbps link (also the
    # return); were every stage paced at one rate, the run would be ~8 ms faster (1 Gbps) or ~15 ms slower (200 kbps)
    monkeypatch.setattr("hwlat.split._api.CALIBRATION_SPINS_MS", (0.0, 2.0, 8.0))  # two links to calibrate: shorter
    network = parse_network("1Gbps/200kbps", 3, rtt_ms=[2.0, 6.0])  # RTT per link too; the return's is the first
    sides = [parse_side("onnxruntime/t1/opt-disable@1"), *[parse_side("onnxruntime/t1@0")] * 2]
    with SplitSession(f"onnx:{branchy}", sides, **QUICK) as session:
        chain = session.plan_after("input", "skip")  # the device forwards the input; s1 [0:skip], s2 [skip:end]
        short = session.plan_after("skip", "float")  # s2 left empty: s1 returns the outputs over the return link
        runs = {}
        for plan in (chain, short):
            predicted = session.evaluate(plan, network)
            runs[plan] = predicted, session.verify(plan, network, predicted, seconds=0.3)
        slow_ms = network.links[1].wire_ms(session.codec(1, 1, "none")["bytes"] + 8)
        assert len(session._transport) == 2  # one calibration per distinct link
    predicted, measured = runs[chain]
    # the latency's parts, predicted and timed in the real run on one clock: the slow hop is where the time goes
    names = ["device", "device_to_s1", "s1", "s1_to_s2", "s2", "s2_to_device"]
    assert [key for key in predicted if key.removesuffix("_ms") in names] == [f"{name}_ms" for name in names]
    assert sum(predicted[f"{name}_ms"] for name in names) == pytest.approx(predicted["latency_ms"])
    assert [key for key in measured if key.startswith("measured_") and key.removeprefix("measured_").removesuffix(
        "_ms") in names] == [f"measured_{name}_ms" for name in names]
    assert sum(measured[f"measured_{name}_ms"] for name in names) == pytest.approx(measured["measured_latency_ms"],
                                                                                   rel=0.1)
    assert measured["measured_s1_to_s2_ms"] >= slow_ms + network.links[1].one_way_ms
    assert measured["measured_s1_to_s2_ms"] == pytest.approx(predicted["s1_to_s2_ms"], rel=0.3)
    assert slow_ms > 7 and predicted["bottleneck"] == "link 1" and predicted["period_ms"] == pytest.approx(slow_ms)
    assert measured["measured_latency_ms"] >= slow_ms + sum(link.one_way_ms for link in network.links)  # 1 + 3 + 1
    assert measured["measured_latency_ms"] == pytest.approx(predicted["latency_ms"], rel=0.5)
    assert measured["measured_throughput_per_s"] <= 1e3 / slow_ms * 1.05
    predicted, measured = runs[short]
    assert predicted["latency_ms"] < slow_ms  # never crosses the slow link (nor its 6 ms RTT), in model or for real
    assert measured["measured_latency_ms"] >= 2 * network.links[0].one_way_ms
    assert measured["measured_latency_ms"] == pytest.approx(predicted["latency_ms"], rel=0.5)


def test_cli_passes_one_network_per_sweep_point(monkeypatch, capsys, tmp_path):
    seen = {}

    def analyze(model, sides, bandwidths, **kwargs):
        seen.update(sides=len(sides), networks=bandwidths, rtt_ms=kwargs["rtt_ms"])
        return ranked_plans()

    monkeypatch.setattr("hwlat.split.analyze_split", analyze)
    code, _, err = run_main(monkeypatch, capsys, "split", "--model", "nb201:x", *SIDES, "--stages", "3",
                            "--bandwidth", "10Mbps/1Gbps,100Mbps,1Mbps/2Mbps/3Mbps", "--rtt", "4ms")
    assert code == 0, err
    assert seen["sides"] == 3 and seen["rtt_ms"] == 4.0
    assert seen["networks"] == [Network((Link(1e7, 4), Link(1e9, 4), Link(1e7, 4)), "10Mbps/1Gbps"),
                                Network.uniform(Link(1e8, 4), 3),
                                Network((Link(1e6, 4), Link(2e6, 4), Link(3e6, 4)), "1Mbps/2Mbps/3Mbps")]
    # a round-trip time per link, counted like the rates: here 2 values, the return taking the first
    code, _, err = run_main(monkeypatch, capsys, "split", "--model", "nb201:x", *SIDES, "--stages", "3",
                            "--bandwidth", "10Mbps/1Gbps,100Mbps", "--rtt", "20ms/500us")
    assert code == 0, err
    assert seen["rtt_ms"] == [20.0, 0.5]
    assert seen["networks"] == [Network((Link(1e7, 20), Link(1e9, 0.5), Link(1e7, 20)), "10Mbps/1Gbps"),
                                Network((Link(1e8, 20), Link(1e8, 0.5), Link(1e8, 20)), "100Mbps")]
    # a per-link label names its report files with '_' for '/'
    table = pd.DataFrame({"bandwidth": ["10Mbps/1Gbps"] * 2, "plan": ["a", "b"], "latency_ms": [2.0, 3.0],
                          "throughput_per_s": [100.0, 200.0], "best_latency": [True, False], "on_front": True})
    written = SplitResult(table, [], {"model": "m", "compression": "none"}).report(str(tmp_path / "split"))
    assert {path.name for path in written} == {"split-10Mbps_1Gbps.html", "split-10Mbps_1Gbps.csv",
                                               "split-10Mbps_1Gbps.json", "split.csv", "split.json"}
    assert json.loads((tmp_path / "split-10Mbps_1Gbps.json").read_text())["settings"]["bandwidth"] == "10Mbps/1Gbps"


def test_cli_verify_writes_reports(branchy, tmp_path):
    prefix = tmp_path / "split"
    result = hwlat("split", "--model", f"onnx:{branchy}", *SIDES, "--bandwidth", "10Mbps,1Gbps", "--verify",
                   "--time-budget", "0.1", "--run-budget", "0.3", "--json", "--report", str(prefix))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["cut_points"] == 4 and len(out["chosen"]) == 2
    assert all(row["measured_latency_ms"] > 0 and row["measured_throughput_per_s"] > 0 for row in out["front"])
    assert out["settings"]["sides"] == {"device": "onnxruntime/t1/opt-disable@1", "s1": "onnxruntime/t1@0"}
    for name in ("split-10Mbps.html", "split-1Gbps.csv", "split-1Gbps.json", "split.csv", "split.json"):
        assert (tmp_path / name).stat().st_size > 0
    summary = json.loads((tmp_path / "split.json").read_text())
    assert [c["after"] for c in summary["cuts"]] == ["input", "skip", "half", "float"]


def test_three_stages_searched_with_optuna_and_run(branchy):
    sides = [parse_side("onnxruntime/t1/opt-disable@1"), parse_side("onnxruntime/t1@0"), parse_side("onnxruntime/t1@0")]
    result = analyze_split(f"onnx:{branchy}", sides, [1e8], enumerate_limit=1, trials=12, verify="chosen",
                           stream_seconds=0.3, **QUICK)
    table = result.table
    assert result.settings["search"].startswith("optuna") and len(table) >= 2
    assert all(len(p) == 2 and p[0] < p[1] for p in table["positions"])
    chosen = result.chosen().iloc[0]
    assert chosen["measured_latency_ms"] > 0 and chosen["measured_throughput_per_s"] > 0
    assert chosen["latency_ms"] == table["latency_ms"].min()


def test_blocks_mode_times_each_block_once_and_sums_them(branchy):
    """With segment_times="blocks" only the blocks between consecutive cuts are ever timed (one per block, side and
    idle time), and a 3-stage search adds up their medians; a wrong mode is refused before any process starts."""
    sides = [parse_side("onnxruntime/t1/opt-disable@1"), parse_side("onnxruntime/t1@0"), parse_side("onnxruntime/t1@0")]
    with pytest.raises(HwlatError, match="segment times must be one of segments, blocks, got 'layers'"):
        SplitSession(f"onnx:{branchy}", sides, segment_times="layers")
    with SplitSession(f"onnx:{branchy}", sides, segment_times="blocks", **QUICK) as session:
        plans = session.all_plans()
        predicted = [session.evaluate(plan, Link(1e8)) for plan in plans]
        timed = {(key[2], key[3]) for key in session._parts if key[0] == "segment"}
        last = len(session.cuts) - 1
        session.segment_times = "segments"  # the default times the whole model as one segment
        session.segment_ms(0, 0, last)
        after = {(key[2], key[3]) for key in session._parts if key[0] == "segment"}
    assert len(plans) > len(session.cuts) and all(row["latency_ms"] > 0 for row in predicted)
    assert timed <= {(a, a + 1) for a in range(last)} | {(a, a) for a in range(last + 1)}  # no segment longer
    assert (0, last) not in timed and (0, last) in after


def ranked_plans() -> SplitResult:
    """A result as `analyze_split` returns it, without stage processes: at 100Mbps the runner-up is predicted 4 %
    slower than the chosen plan (measured the other way round), at 1Gbps 50 % slower, at 10Mbps there is one plan."""
    import pandas as pd

    rows = [("100Mbps", "a", 4.0, 4.4), ("100Mbps", "b", 4.16, 4.2), ("100Mbps", "c", 9.0, 9.0),
            ("1Gbps", "b", 3.0, 3.1), ("1Gbps", "a", 2.0, 2.1), ("10Mbps", "a", 20.0, 20.5)]
    table = pd.DataFrame(rows, columns=["bandwidth", "plan", "latency_ms", "measured_latency_ms"])
    table["best_latency"] = table["latency_ms"] == table.groupby("bandwidth")["latency_ms"].transform("min")
    table["on_front"] = table["best_latency"]
    return SplitResult(table, [], {"sides": {}})


def test_chosen_split_names_the_runner_up_and_close_calls(monkeypatch, capsys):
    chosen = ranked_plans().chosen().set_index("bandwidth")
    assert chosen.loc[["100Mbps", "1Gbps"], "runner_up"].tolist() == ["b", "b"]
    assert chosen.loc["100Mbps", "runner_up_margin"] == pytest.approx(0.04)
    assert chosen.loc["1Gbps", "runner_up_margin"] == pytest.approx(0.5) and CLOSE_CALL < 0.5
    assert chosen["close_call"].tolist() == [True, False, False]  # one plan alone is no close call
    assert chosen.loc["10Mbps", ["runner_up", "runner_up_margin"]].isna().all()
    monkeypatch.setattr("hwlat.split.analyze_split", lambda *args, **kwargs: ranked_plans())
    code, out, err = run_main(monkeypatch, capsys, "split", "--model", "nb201:x", *SIDES)
    assert code == 0, err
    text = " ".join(out.split())  # the console wraps long lines
    assert text.count("close call") == 1, out
    assert "close call at 100Mbps: b is predicted only 4.0% slower than the chosen a" in text
    assert "measured once 4.40 ms (chosen) and 4.20 ms (runner-up); --race N orders them" in text
    assert "where the chosen" not in text  # no parts measured, no breakdown
    parted = ranked_plans()  # the 1Gbps choice with its parts, predicted and measured
    at_1gbps = {"device_ms": 1.5, "device_to_s1_ms": 0.5, "measured_device_ms": 1.4, "measured_device_to_s1_ms": 0.7}
    parted.table = parted.table.assign(**{key: [np.nan] * 4 + [ms, np.nan] for key, ms in at_1gbps.items()})
    monkeypatch.setattr("hwlat.split.analyze_split", lambda *args, **kwargs: parted)
    code, out, err = run_main(monkeypatch, capsys, "split", "--model", "nb201:x", *SIDES)
    assert code == 0, err
    text = " ".join(out.split())
    assert text.count("where the chosen") == 1
    assert "1Gbps, where the chosen a spends its time (ms predicted / measured): device 1.5 / 1.4, device->s1 0.5 / " \
           "0.7" in text
    unverified = ranked_plans()
    unverified.table = unverified.table.drop(columns="measured_latency_ms")
    monkeypatch.setattr("hwlat.split.analyze_split", lambda *args, **kwargs: unverified)
    code, out, err = run_main(monkeypatch, capsys, "split", "--model", "nb201:x", *SIDES)
    assert code == 0 and "only real runs of both can order them" in " ".join(out.split()), err


@pytest.mark.parametrize("wins, p_value, faster, says", [
    (1, 0.021, "second", "raced against b 10 times (alternating real runs): b was faster in 9 of 10 (sign test p = 0.021"),
    (9, 0.021, "first", "the chosen split was faster in 9 of 10 (sign test p = 0.021"),
    (6, 0.754, "neither", "the chosen split was faster in 6 of 10 (sign test p = 0.75; median chosen / rival 1.010): "
               "no difference shown in 10 runs each"),
])
def test_a_raced_close_call_says_which_is_faster_or_that_it_is_a_tie(monkeypatch, capsys, wins, p_value, faster,
                                                                     says):
    raced = ranked_plans()
    best = raced.table.index[(raced.table["bandwidth"] == "100Mbps") & raced.table["best_latency"]][0]
    for key, value in {"race_rival": "b", "race_rounds": 10, "race_first_wins": wins, "race_p_value": p_value,
                       "race_median_ratio": 1.01, "race_faster": faster}.items():
        raced.table.loc[best, key] = value
    monkeypatch.setattr("hwlat.split.analyze_split", lambda *args, **kwargs: raced)
    code, out, err = run_main(monkeypatch, capsys, "split", "--model", "nb201:x", *SIDES, "--race", "10")
    assert code == 0, err
    text = " ".join(out.split())
    assert says in text and "measured once" not in text, out


def test_race_orders_two_plans_by_alternating_real_runs(branchy):
    link = Link(1e6)  # 1 Mbps: server-only sends the input (~1.7 ms on the wire), device-only sends nothing
    with SplitSession(f"onnx:{branchy}", [parse_side("onnxruntime/t1/opt-disable@1"),
                                          parse_side("onnxruntime/t1@0")], **QUICK) as session:
        device_only, server_only = session.plan_after("float"), session.plan_after("input")
        raced = session.race(device_only, server_only, link, rounds=6)
        with pytest.raises(HwlatError, match="at least 1 round"):
            session.race(device_only, server_only, link, rounds=0)
        with pytest.raises(HwlatError, match="two different plans"):
            session.race(device_only, device_only, link, rounds=2)
    assert raced["race_rounds"] == 6 and raced["race_first_wins"] == 6
    assert raced["race_p_value"] == pytest.approx(2 / 2 ** 6) and raced["race_median_ratio"] < 0.5
    assert raced["race_faster"] == "first"


def test_cli_races_the_chosen_split_against_its_rival_for_real(monkeypatch, capsys, branchy, tmp_path):
    monkeypatch.setattr("hwlat.split._api.CLOSE_CALL", 1e9)  # every choice with a runner-up is a close call now
    common = ["split", "--model", f"onnx:{branchy}", *SIDES, "--bandwidth", "1Mbps", "--cut", "input,skip,float",
              "--time-budget", "0.1", "--run-budget", "0.3", "--json"]
    code, out, err = run_main(monkeypatch, capsys, *common, "--race", "2")
    assert code == 0, err
    result = json.loads(out)
    plans, chosen = pd.DataFrame(result["plans"]), result["chosen"][0]
    assert chosen["race_rival"] == chosen["runner_up"]  # nothing measured before the race: the predicted runner-up
    assert chosen["race_rounds"] == 2 and chosen["race_first_wins"] in (0, 1, 2) and chosen["race_median_ratio"] > 0
    code, out, err = run_main(monkeypatch, capsys, *common, "--race", "1", "--verify", "--report",
                              str(tmp_path / "raced"))
    assert code == 0, err
    result = json.loads(out)
    plans, chosen = pd.DataFrame(result["plans"]), result["chosen"][0]
    others = plans[plans["plan"] != chosen["plan"]]
    assert chosen["race_rival"] == others.loc[others["measured_latency_ms"].idxmin(), "plan"]  # the fastest measured
    assert plans["race_rounds"].notna().sum() == 1  # only the chosen row carries the race
    page = json.loads((tmp_path / "raced-1Mbps.json").read_text())  # the front's report names the race too
    assert page["settings"]["race_rival"] == chosen["race_rival"] and page["settings"]["race_rounds"] == 1
    code, _, err = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", "--race", "-1")
    assert code == 2 and "race rounds must be >= 0" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(HwlatError, match="race must be close or all"):
        analyze_split(f"onnx:{branchy}", [parse_side("onnxruntime/t1@0")] * 2, [1e6], race="sometimes")


@pytest.mark.parametrize("cut, message", [
    ("mul", "cut 'mul' is not a valid cut point: 2 tensors cross after node 'mul' (x, e)"),  # inside the skip
    ("sigmoid", "cut 'sigmoid' is not a valid cut point: 3 tensors cross after node 'sigmoid'"),  # in a branch
    ("e", "cut 'e' is not a valid cut point: 2 tensors cross after node 'mul'"),  # a tensor of the skip
    ("weights", "cut 'weights' is not a valid cut point: node 'weights' computes constants only"),
    ("skip,nope", "cut 'nope': no node or tensor of that name in the model"),
])
def test_cut_on_an_invalid_node_is_one_line_error(monkeypatch, capsys, branchy, cut, message):
    before = stage_processes()
    code, _, err = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", "--cut", cut, "--verify")
    assert code == 2, err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert stage_processes() <= before  # refused before any stage process started


def test_too_few_cuts_for_the_stages(monkeypatch, capsys, branchy):
    code, _, err = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", "--stages", "3",
                            "--cut", "skip,s")  # two names of the same cut point
    assert code == 2 and "3 stages need at least 2 distinct cuts, got 1" in err


def test_list_cuts_names_what_cut_accepts(monkeypatch, capsys, branchy):
    code, out, _ = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", "--list-cuts", "--json",
                            "--compression", "fp16")
    assert code == 0
    cuts = json.loads(out)["cuts"]
    assert [(c["after"], c["tensors"], c["bytes"]) for c in cuts] == [
        ("input", ["x"], 64), ("skip", ["s"], 64), ("half", ["h"], 64), ("float", ["y"], 64)]
    code, out, _ = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", "--list-cuts")
    assert code == 0 and all(name in out for name in ("input", "skip", "half", "float"))


@pytest.mark.slow
def test_cut_runs_only_the_listed_cuts_and_the_report_renders_in_chromium(monkeypatch, capsys, branchy, tmp_path):
    before = stage_processes()
    code, out, err = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", *SIDES, "--cut", "s,input",
                              "--verify", "--bandwidth", "10Mbps,1Gbps", "--time-budget", "0.05",
                              "--run-budget", "0.2", "--json", "--report", str(tmp_path / "split"))
    assert code == 0, err
    result = json.loads(out)
    assert result["settings"]["candidate_cuts"] == ["input", "skip"]  # tensor s names the cut after node skip
    plans = result["plans"]
    assert sorted((p["bandwidth"], p["after"]) for p in plans) == [
        ("10Mbps", "input"), ("10Mbps", "skip"), ("1Gbps", "input"), ("1Gbps", "skip")]
    assert {p["plan"] for p in plans} == {"device[0:0] | s1[0:8]", "device[0:6] | s1[6:8]"}
    assert all(p["measured_latency_ms"] > 0 and p["measured_throughput_per_s"] > 0 for p in plans)  # every one run
    assert stage_processes() <= before
    # the report of the same run, in a real browser: plot drawn, front table with measured columns, chosen split
    dom = render_in_chromium(tmp_path / "split-10Mbps.html", tmp_path)
    assert 'id="pareto-plot"' in dom and "main-svg" in dom  # plotly drew its SVG inside the plot element
    front = json.loads((tmp_path / "split-10Mbps.json").read_text())["front"]
    table = dom[dom.index('id="pareto-front"'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr") == len(front) + 1  # header + one row per front member
    assert "measured_latency_ms" in table and all(row["plan"] in table for row in front)
    chosen = next(row for row in result["chosen"] if row["bandwidth"] == "10Mbps")
    assert f'"chosen": "{chosen["plan"]}"' in dom  # the chosen split is in the page's settings, with the runner-up
    assert f'"runner_up": "{chosen["runner_up"]}"' in dom and '"close_call": ' in dom
