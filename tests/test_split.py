"""Split points: cut discovery on graphs with branches, bytes, segments, codecs, network model (per-link rates),
rate limiter."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hwlat._errors import HwlatError
from hwlat.split import (
    Hop,
    Link,
    Network,
    PacedWriter,
    PlanCosts,
    TransportCalibration,
    as_network,
    find_cuts,
    objectives,
    parse_bandwidth,
    parse_duration_ms,
    parse_network,
    parse_networks,
    parse_rtts,
    parse_side,
    static_shapes,
    wait_until,
)
from hwlat.split._codec import decode, encode
from hwlat.split._execute import compared_parts, measured_parts
from hwlat.split._objectives import part_names
from hwlat.split._network import framed_bytes, receive_message
from hwlat.split._segments import Segmenter, session, tensor_values


def branchy_model(path=None) -> onnx.ModelProto:
    """x -> Relu a -> (Sigmoid b, Tanh c) -> Add d -> Mul w -> Add x (skip) -> Cast to fp16 -> Cast to fp32 y.

    Weights reach Mul through an Identity of an initializer (a static node, as torch exports them).
    """
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
        helper.make_node("Tanh", ["a"], ["c"], name="tanh"),
        helper.make_node("Add", ["b", "c"], ["d"], name="add"),
        helper.make_node("Identity", ["w0"], ["w"], name="weights"),
        helper.make_node("Mul", ["d", "w"], ["e"], name="mul"),
        helper.make_node("Add", ["e", "x"], ["s"], name="skip"),
        helper.make_node("Cast", ["s"], ["h"], name="half", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["h"], ["y"], name="float", to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "branchy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8])],
        initializer=[numpy_helper.from_array(np.linspace(0.5, 2, 32, dtype=np.float32).reshape(4, 8), "w0")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if path is not None:
        onnx.save(model, str(path))
    return model


def test_cuts_skip_branches_and_skip_connections():
    cuts = find_cuts(static_shapes(branchy_model()))
    # inside the sigmoid/tanh branch two tensors cross; between the first add and the skip add x crosses too
    assert [c.after for c in cuts] == ["input", "skip", "half", "float"]
    assert [c.tensors for c in cuts] == [("x",), ("s",), ("h",), ("y",)]
    # with two tensors allowed, x may cross beside one other tensor, never beside the branch's two
    wider = find_cuts(static_shapes(branchy_model()), max_tensors=2)
    assert [c.after for c in wider] == ["input", "relu", "add", "mul", "skip", "half", "float"]
    assert [set(c.tensors) for c in wider[1:4]] == [{"x", "a"}, {"x", "d"}, {"x", "e"}]


def test_cuts_are_located_by_node_or_crossing_tensor():
    from hwlat.split._cuts import locate_cuts

    model = static_shapes(branchy_model())
    cuts = find_cuts(model)
    assert locate_cuts(model, cuts, ["skip", "h", "input", "x", "y"]) == [1, 2, 0, 0, 3]
    chain = helper.make_graph(  # unnamed nodes are listed by their type: the name is ambiguous, tensors are not
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"])], "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
    unnamed = static_shapes(helper.make_model(chain, opset_imports=[helper.make_opsetid("", 17)]))
    assert locate_cuts(unnamed, find_cuts(unnamed), ["a", "b"]) == [1, 2]
    with pytest.raises(HwlatError, match="'Relu' names 2 cut points"):
        locate_cuts(unnamed, find_cuts(unnamed), ["Relu"])


def test_bytes_per_cut_are_dtype_aware_and_compressed():
    cuts = {c.after: c for c in find_cuts(static_shapes(branchy_model()))}
    assert cuts["input"].nbytes == 32 * 4 and cuts["half"].nbytes == 32 * 2 and cuts["skip"].dtypes == ("float32",)
    assert cuts["input"].compressed_bytes("fp16") == 32 * 2
    assert cuts["input"].compressed_bytes("int8") == 32 + 8
    assert cuts["half"].compressed_bytes("fp16") == 32 * 2 and cuts["half"].compressed_bytes("int8") == 32 + 8
    for compression in ("none", "fp16", "int8"):  # the codec sends what the cut accounts for, plus its header
        array = np.ones((1, 4, 8), dtype=np.float32)
        header = len(encode([array], compression)) - cuts["input"].compressed_bytes(compression)
        assert 0 < header < 120
    with pytest.raises(HwlatError, match="unknown compression"):
        cuts["input"].compressed_bytes("zip")


def test_a_batch_scales_every_crossing_tensor_and_needs_a_dynamic_batch(tmp_path):
    single, batched = (find_cuts(static_shapes(branchy_model(), batch)) for batch in (1, 4))
    assert [c.after for c in batched] == [c.after for c in single]
    assert [c.nbytes for c in batched] == [4 * c.nbytes for c in single]
    fixed = branchy_model()
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # exported with batch 1 baked in
    assert [c.nbytes for c in find_cuts(static_shapes(fixed))] == [c.nbytes for c in single]
    with pytest.raises(HwlatError, match="model input 'x' has a fixed first dimension of 1: a batch of 2 needs"):
        static_shapes(fixed, 2)
    with pytest.raises(HwlatError, match="batch size must be >= 1, got 0"):
        static_shapes(branchy_model(), 0)


def test_nb201_cuts_fall_between_cells_only():
    from hwlat.split import resolve_model

    model = static_shapes(resolve_model("nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|"
                                        "skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|").load())
    cuts = find_cuts(model)
    inside = [c for c in cuts[1:-1] if "/cells/" in c.after and not c.after.endswith(("/Add_2", "/Add"))]
    assert not inside and len(cuts) > 15
    assert cuts[1].nbytes == 16 * 32 * 32 * 4 and cuts[-1].nbytes == 10 * 4


def _run_segments(model, cuts, feeds):
    segmenter = Segmenter(model)
    values = dict(feeds)
    for start, end in zip(cuts, cuts[1:]):
        out = session(segmenter.segment(start, end)).run(list(end.tensors),
                                                          {n: values[n] for n in start.tensors})
        values.update(zip(end.tensors, out))
    return values


def test_segments_recombine_to_the_full_output():
    from hwlat.split import resolve_model
    from hwlat.split._models import example_inputs

    model = static_shapes(resolve_model("nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|"
                                        "skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|").load())
    cuts = find_cuts(model)
    feeds = example_inputs(model)
    full = tensor_values(model, feeds, ["logits"])["logits"]
    chosen = [cuts[0], cuts[3], cuts[len(cuts) // 2], cuts[-2], cuts[-1]]
    values = _run_segments(model, chosen, feeds)
    np.testing.assert_allclose(values["logits"], full, rtol=1e-4, atol=1e-5)
    assert Segmenter(model).segment(cuts[2], cuts[2]) is None
    with pytest.raises(HwlatError, match="backwards"):
        Segmenter(model).segment(cuts[3], cuts[2])


def test_codec_round_trips():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 3, 5)).astype(np.float32), np.arange(6, dtype=np.int64)]
    raw = decode(encode(arrays))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, raw))
    half = decode(encode(arrays, "fp16"))
    np.testing.assert_allclose(half[0], arrays[0], rtol=1e-3, atol=1e-3)
    assert half[0].dtype == np.float32 and np.array_equal(half[1], arrays[1])
    quantized = decode(encode(arrays, "int8"))
    step = (arrays[0].max() - arrays[0].min()) / 255
    assert np.abs(quantized[0] - arrays[0]).max() <= step / 2 + 1e-6
    big = [rng.standard_normal((16, 8, 8)).astype(np.float32)]
    assert len(encode(big, "int8")) < len(encode(big, "fp16")) < len(encode(big)) < 1024 * 4 + 100


@pytest.mark.parametrize("text, bps", [("10Mbps", 1e7), ("1Gbps", 1e9), ("1.5 mbps", 1.5e6), ("800kbps", 8e5)])
def test_bandwidth_parsing(text, bps):
    assert parse_bandwidth(text) == pytest.approx(bps)


@pytest.mark.parametrize("text", ["10", "fast", "10MB/s", "0Mbps", "-5Mbps", ""])
def test_malformed_bandwidths_are_refused(text):
    with pytest.raises(HwlatError, match="bandwidth"):
        parse_bandwidth(text)


def test_durations_and_sides():
    assert parse_duration_ms("20ms") == 20 and parse_duration_ms("500us") == 0.5 and parse_duration_ms("0.1s") == 100
    with pytest.raises(HwlatError, match="duration"):
        parse_duration_ms("-3ms")
    side = parse_side("onnxruntime/t2/opt-basic@0")
    assert (side.threads, side.optimization, side.cpus, side.spec) == (2, "basic", (0,), "onnxruntime/t2/opt-basic@0")
    for bad, message in (("torch/t1", "onnxruntime or tvm"), ("onnxruntime/t1/opt-max", "optimisation level"),
                         ("onnxruntime/t1@999", "not available"), ("ort", "is not RUNTIME")):
        with pytest.raises(HwlatError, match=message):
            parse_side(bad)


def test_network_model_arithmetic():
    link = Network.uniform(Link(8e6, rtt_ms=10), 2)  # 1 MB/s: 1 ms per kB, both ways
    assert link.links[0].wire_ms(1000) == pytest.approx(1.0) and link.links[1].one_way_ms == 5
    costs = PlanCosts(compute_ms=(2.0, 3.0), groups=((1,), (0,)),
                      hops=(Hop(992, 0.1, 0.2, 0, 1), Hop(92, 0.05, 0.01, 1, 0)))
    got = objectives(costs, link, (0.5, 0.5))
    wire = link.links[0].wire_ms(framed_bytes(992)) + link.links[1].wire_ms(framed_bytes(92))
    assert got["latency_ms"] == pytest.approx(5.0 + 0.1 + 0.2 + 0.05 + 0.01 + 2 * 0.5 + wire + 10)
    assert got["bytes"] == 1000 + 100
    assert got["period_ms"] == pytest.approx(3.0 + 0.2 + 0.05) and got["bottleneck"] == "cores (0,)"
    shared = objectives(PlanCosts((2.0, 3.0), costs.hops, ((0,), (0,))), link, (0.5, 0.5))
    assert shared["period_ms"] == pytest.approx(5.0 + 0.1 + 0.2 + 0.05 + 0.01)  # one core does everything
    idle = objectives(costs, link, (0.5, 0.5), idle_compute_ms=(2.5, 3.5))  # stages slower after idling: latency only
    assert idle["latency_ms"] == pytest.approx(got["latency_ms"] + 1.0) and idle["period_ms"] == got["period_ms"]
    slow = objectives(costs, Network.of([8e5], 2), (0.5, 0.5))
    assert slow["bottleneck"] == "link 0" and slow["period_ms"] == pytest.approx(10.0)
    woken = objectives(costs, link, (0.5, 0.9))  # the device idled longer: its hop costs more
    assert woken["latency_ms"] == pytest.approx(got["latency_ms"] + 0.4) and woken["transport_overhead_ms"] == 1.4
    calibration = TransportCalibration(idle_ms=(16.0, 0.3, 4.0), overhead_ms=(0.45, 0.13, 0.25))
    assert [calibration.at(ms) for ms in (0.0, 0.3, 2.15, 4.0, 10.0, 100.0)] == pytest.approx(
        [0.13, 0.13, 0.19, 0.25, 0.35, 0.45])
    with pytest.raises(HwlatError, match="bandwidth must be positive"):
        Link(0)


def test_per_link_rates_are_parsed():
    one = parse_network("100Mbps", 3, rtt_ms=4)  # one value: every link, labelled as before
    assert one == Network.uniform(Link(1e8, 4), 3) and one.label == "100Mbps"
    forward = parse_network("10Mbps/1Gbps", 3, rtt_ms=4)  # stages - 1 values: the return at the device's rate
    assert forward.links == (Link(1e7, 4), Link(1e9, 4), Link(1e7, 4)) and forward.label == "10Mbps/1Gbps"
    assert parse_network("10Mbps/1Gbps/100Mbps", 3).links[-1] == Link(1e8)  # stages values: the last returns
    assert parse_network("10Mbps/1Gbps", 2).links == (Link(1e7), Link(1e9))  # 2 stages: device -> s1, s1 -> device
    assert [n.label for n in parse_networks("10Mbps/1Gbps, 100Mbps/1Gbps,,1Gbps", 3)] == [
        "10Mbps/1Gbps", "100Mbps/1Gbps", "1Gbps"]
    assert forward.link_for(0, 1) == Link(1e7, 4) and forward.link_for(1, 2) == Link(1e9, 4)
    assert forward.link_for(2, 0) == forward.link_for(1, 0) == Link(1e7, 4)  # any last stage returns on that link
    for sender, receiver in ((0, 2), (2, 3), (3, 0), (0, 0)):
        with pytest.raises(HwlatError, match=f"no link from stage {sender} to stage {receiver} in a chain of 3"):
            forward.link_for(sender, receiver)
    # the API takes rates, per-link rates, their text, Links and Networks alike
    assert as_network(1e8, 3, rtt_ms=4) == one and as_network(np.float64(1e8), 3, 4) == one
    assert as_network((1e7, 1e9), 3) == as_network("10Mbps/1Gbps", 3) == parse_network("10Mbps/1Gbps", 3)
    assert as_network(Link(1e8, 4), 3) == one and as_network(one, 3) is one


def test_round_trip_times_per_link_are_counted_like_the_rates():
    assert parse_rtts("20ms") == 20.0 and parse_rtts("20ms/500us") == [20.0, 0.5]
    network = Network.of([1e7, 1e9], 3, rtt_ms=[20.0, 0.5])  # 2 forward links; the return takes the first of each
    assert network.links == (Link(1e7, 20.0), Link(1e9, 0.5), Link(1e7, 20.0)) and network.label == "10Mbps/1Gbps"
    assert Network.of([1e8], 3, rtt_ms=(1.0, 2.0, 3.0)).links == (Link(1e8, 1.0), Link(1e8, 2.0), Link(1e8, 3.0))
    assert as_network("100Mbps", 2, [4.0]) == as_network(1e8, 2, 4.0) == Network.uniform(Link(1e8, 4.0), 2)
    costs = PlanCosts((1.0, 2.0, 3.0), (Hop(0, 0, 0, 0, 1), Hop(0, 0, 0, 1, 2), Hop(0, 0, 0, 2, 0)), ("d", "s1", "s2"))
    # each hop waits half its own link's RTT: 10 + 0.25 + 10 ms, beside its framing bytes on the wire
    wires = sum(link.wire_ms(framed_bytes(0)) for link in network.links)
    assert objectives(costs, network, (0.0, 0.0, 0.0))["latency_ms"] == pytest.approx(6.0 + 20.25 + wires)
    with pytest.raises(HwlatError, match="round-trip time 1ms/2ms/3ms: 3 round-trip times for 2 stages"):
        Network.of([1e8], 2, rtt_ms=[1.0, 2.0, 3.0])
    with pytest.raises(HwlatError, match="round-trip time must be >= 0"):
        Network.of([1e8], 2, rtt_ms=[1.0, -2.0])


@pytest.mark.parametrize("text, stages, message", [
    ("10Mbps/1Gbps/1Gbps/1Gbps", 3, "bandwidth 10Mbps/1Gbps/1Gbps/1Gbps: 4 link rates for 3 stages; give 1 (every "
                                    "link), 2 (device -> s1 -> s2; the return to the device at the first rate) or 3"),
    ("10Mbps/1Gbps/1Gbps", 2, "3 link rates for 2 stages; give 1 (every link) or 2 (device -> s1, then the return)"),
    ("10Mbps/1Gbps", 4, "2 link rates for 4 stages"),
    ("10Mbps/0Mbps", 3, "bandwidth '0Mbps' must be positive"),
    ("10Mbps/fast", 3, "bandwidth 'fast' is not a number with a unit"),
    ("10Mbps//1Gbps", 3, "bandwidth '10Mbps//1Gbps' has an empty link rate"),
    ("10Mbps/", 3, "has an empty link rate"),
    ("100Mbps", 1, "a split needs at least 2 stages, got 1"),
])
def test_bad_per_link_rates_name_the_problem(text, stages, message):
    with pytest.raises(HwlatError) as error:
        parse_networks(text, stages)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_networks_of_the_wrong_size_are_refused():
    with pytest.raises(HwlatError, match="network 10Mbps has 2 links, a 3-stage split needs 3"):
        as_network(Network.of([1e7], 2), 3)
    with pytest.raises(HwlatError, match="at least 2 Links"):
        Network((Link(1e7),), "10Mbps")
    with pytest.raises(HwlatError, match="bandwidth must be positive"):
        as_network((1e7, 0.0), 3)


def test_network_model_with_a_rate_per_link():
    network = Network.of([8e6, 8e5], 3, rtt_ms=2)  # device -> s1 1 MB/s, s1 -> s2 0.1 MB/s, the return at 1 MB/s
    costs = PlanCosts(compute_ms=(1.0, 2.0, 3.0), groups=("d", "s1", "s2"),
                      hops=(Hop(992, 0.1, 0.2, 0, 1), Hop(492, 0.1, 0.2, 1, 2), Hop(92, 0.05, 0.01, 2, 0)))
    got = objectives(costs, network, (0.5, 0.5, 0.5))
    # on the wire: 1000 B at 1 MB/s = 1 ms, 500 B at 0.1 MB/s = 5 ms, 100 B at 1 MB/s = 0.1 ms; RTT/2 = 1 ms per hop
    assert got["latency_ms"] == pytest.approx(6.0 + 0.66 + 3 * 0.5 + (1.0 + 5.0 + 0.1) + 3 * 1.0)
    assert got["bottleneck"] == "link 1" and got["period_ms"] == pytest.approx(5.0) and got["bytes"] == 1600
    back = objectives(costs, Network.of([8e6, 8e5, 8e4], 3, rtt_ms=2), (0.5, 0.5, 0.5))  # return: 10 ms per 100 B
    assert back["bottleneck"] == "link 2" and back["period_ms"] == pytest.approx(10.0)
    assert back["latency_ms"] == pytest.approx(got["latency_ms"] + 9.9)
    # the last stage left empty: s1 returns to the device over the return link, never over s1 -> s2
    short = PlanCosts((1.0, 2.0), (costs.hops[0], Hop(92, 0.05, 0.01, 1, 0)), ("d", "s1"))
    assert objectives(short, network, (0.5, 0.5))["latency_ms"] == pytest.approx(3.0 + 0.36 + 1.0 + 1.1 + 2.0)
    assert objectives(short, Network.of([8e6, 8e5, 8e4], 3), (0, 0))["bottleneck"] == "link 1"  # 10 ms back
    # one rate for every link is the model of one link
    uniform = objectives(costs, Network.of([8e6], 3, rtt_ms=2), (0.5, 0.5, 0.5))
    assert uniform["latency_ms"] == pytest.approx(got["latency_ms"] - 4.5) and uniform["bottleneck"] == "cores s2"


def test_latency_parts_add_up_in_chain_order():
    assert part_names(1) == ["device"]
    assert part_names(3) == ["device", "device_to_s1", "s1", "s1_to_s2", "s2", "s2_to_device"]
    network = Network.of([8e6, 8e5], 3, rtt_ms=2)
    costs = PlanCosts(compute_ms=(1.0, 2.0, 3.0), groups=("d", "s1", "s2"),
                      hops=(Hop(992, 0.1, 0.2, 0, 1), Hop(492, 0.1, 0.2, 1, 2), Hop(92, 0.05, 0.01, 2, 0)))
    got = objectives(costs, network, (0.5, 0.5, 0.5), idle_compute_ms=(1.5, 2.5, 3.5))
    # a hop = encode + overhead + wire (1000 B at 1 MB/s) + RTT/2 + decode; stages at their idle times
    assert [got[f"{name}_ms"] for name in part_names(3)] == pytest.approx([1.5, 0.1 + 0.5 + 1.0 + 1.0 + 0.2, 2.5,
                                                                           0.1 + 0.5 + 5.0 + 1.0 + 0.2, 3.5,
                                                                           0.05 + 0.5 + 0.1 + 1.0 + 0.01])
    assert sum(got[f"{name}_ms"] for name in part_names(3)) == pytest.approx(got["latency_ms"])
    alone = objectives(PlanCosts((4.0,), (), ("d",)), network, ())
    assert alone["device_ms"] == alone["latency_ms"] == 4.0 and "device_to_s1_ms" not in alone


def test_measured_parts_split_each_single_input_on_one_clock():
    # two single inputs of a 2-stage run (seconds on one clock), then a stream input with no "infer" span
    device = [("compute", 0.0, 0.001), ("infer", 0.0, 0.010), ("compute", 1.0, 1.002), ("infer", 1.0, 1.012),
              ("compute", 2.0, 2.001)]
    server = [("compute", 0.003, 0.008), ("compute", 1.004, 1.009), ("compute", 2.003, 2.008)]
    parts = measured_parts(device, [server])
    # device 1 and 2 ms, hop 2 ms twice, s1 5 ms twice, return 2 and 3 ms: medians of each part
    assert parts == pytest.approx({"device": 1.5, "device_to_s1": 2.0, "s1": 5.0, "s1_to_device": 2.5})
    assert measured_parts([("compute", 0.0, 0.004), ("infer", 0.0, 0.005)], []) == pytest.approx({"device": 5.0})
    # an input whose server span is missing (or doubled) is left out rather than mis-split
    assert measured_parts(device[:2], [[]]) == {}
    assert measured_parts(device[:2], [server[:1] * 2]) == {}
    # the parts a table holds both ways: not the latency itself, not other measured columns, not one-sided parts
    assert compared_parts(["latency_ms", "measured_latency_ms", "device_ms", "measured_device_ms", "s1_ms",
                           "measured_throughput_per_s", "measured_s1_to_device_ms"]) == ["device"]


def test_paced_writer_keeps_the_rate():
    left, right = socket.socketpair()
    received: list[tuple[float, int]] = []

    def read() -> None:
        while (message := receive_message(right)) is not None:
            received.append((time.perf_counter(), len(message)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        link = Link(8e6)  # 1 MB/s
        writer = PacedWriter(left, link)
        start = time.perf_counter()
        for _ in range(3):
            writer.send(bytes(100_000 - 8))
    finally:
        left.close()
        reader.join(timeout=10)
        right.close()
    elapsed = [t - start for t, _ in received]
    assert [n for _, n in received] == [100_000 - 8] * 3
    # each 100 kB message takes 0.1 s at 1 MB/s; back-to-back messages keep the rate
    assert elapsed[0] == pytest.approx(0.1, rel=0.1) and elapsed[-1] == pytest.approx(0.3, rel=0.05)


def test_waits_end_on_time_not_early_and_not_a_wake_up_late():
    lateness = []
    for _ in range(20):
        deadline = time.perf_counter() + 1e-3
        wait_until(deadline)
        lateness.append(time.perf_counter() - deadline)
    # the last SPIN_MARGIN_S is spent yielding: a sleeping core's wake-up (0.07-0.1 ms on this VM) is not added
    assert min(lateness) >= 0 and np.median(lateness) < 5e-5
