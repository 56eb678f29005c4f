"""NAS-Bench-201 space: parsing, official index order, encodings, the real network, FLOPs/params, ONNX."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import require_shared

from hwlat._errors import HwlatError
from hwlat.spaces import SPACES, BaseSpace, NasBench201Space, get_space
from hwlat.spaces._export import onnx_path
from hwlat.spaces.nasbench201 import EDGES, NUM_ARCHS, OPS

SPACE = NasBench201Space()
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


def cell(*ops: str) -> str:
    """Arch string from 6 ops in `EDGES` order."""
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)


# ---------------------------------------------------------------- parsing and official order


def test_enumerate_round_trips_every_arch():
    archs = list(SPACE.enumerate())
    assert len(archs) == len(SPACE) == NUM_ARCHS == 15625
    assert len(set(archs)) == NUM_ARCHS
    for i, arch in enumerate(archs):
        assert SPACE.canonical(arch) == arch
        assert SPACE.index(arch) == i
        assert SPACE.arch(i) == arch


def test_index_order_matches_help_str_arch2idx():
    path = require_shared("data/help/nasbench201/str_arch2idx.pt")
    official = torch.load(path, weights_only=True)
    assert len(official) == NUM_ARCHS
    assert all(SPACE.index(arch) == idx for arch, idx in official.items())


def test_index_order_matches_nats_bench_csv_rows():
    import pandas as pd

    path = require_shared("data/nats-bench/nats_bench.csv")
    rows = pd.read_csv(path, usecols=["ArchitectureString"])["ArchitectureString"].tolist()
    assert rows == list(SPACE.enumerate())


def test_canonical_strips_surrounding_whitespace():
    assert SPACE.canonical(f"  {MIXED}\n") == MIXED


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        ("", "empty string"),
        ("|none~0|+|none~0|none~1|", "2 node(s)"),
        (ALL_NONE + "+|none~0|", "4 node(s)"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 'none~0|' must start and end with '|'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 has 1 input edge(s), expected 2"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|", "node 3 has 4 input edge(s)"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "node 2, edge from node 1: input index '2', expected 1"),
        ("|none~0|+|none~0|none1|+|none~0|none~1|none~2|", "node 2, edge from node 1: 'none1' is not of the form"),
        ("|none~0|+|none~0|conv5~1|+|none~0|none~1|none~2|", "node 2, edge from node 1: unknown op 'conv5'"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|NONE~2|", "node 3, edge from node 2: unknown op 'NONE'"),
    ],
)
def test_malformed_strings_name_the_problem(arch, fragment):
    with pytest.raises(HwlatError) as info:
        SPACE.canonical(arch)
    message = str(info.value)
    assert message.startswith(f"nb201 arch {arch!r}:")
    assert fragment in message


def test_unknown_op_message_lists_the_valid_ops():
    with pytest.raises(HwlatError, match="expected one of none, skip_connect, nor_conv_1x1"):
        SPACE.index(cell("none", "none", "conv5", "none", "none", "none"))


def test_non_string_arch_rejected():
    with pytest.raises(HwlatError, match="must be a string, got int"):
        SPACE.canonical(3)


@pytest.mark.parametrize("bad", [-1, NUM_ARCHS, "3", 1.5, True])
def test_arch_rejects_bad_indices(bad):
    with pytest.raises(HwlatError, match="nb201 index"):
        SPACE.arch(bad)


def test_arch_accepts_numpy_integers():
    assert SPACE.arch(np.int64(5)) == SPACE.arch(5)


# ---------------------------------------------------------------- sampling


def test_sample_is_distinct_and_reproducible():
    first = SPACE.sample(500, seed=7)
    assert len(set(first)) == 500
    assert first == SPACE.sample(500, seed=7)
    assert first != SPACE.sample(500, seed=8)
    assert all(SPACE.canonical(a) == a for a in first)
    assert sorted(SPACE.sample(NUM_ARCHS, seed=0)) == sorted(SPACE.enumerate())


@pytest.mark.parametrize("n", [0, -3, NUM_ARCHS + 1, 2.0])
def test_sample_rejects_bad_sizes(n):
    with pytest.raises(HwlatError, match="sample size"):
        SPACE.sample(n, seed=0)


def test_sample_accepts_numpy_integer_sizes():
    assert SPACE.sample(np.int64(4), seed=1) == SPACE.sample(4, seed=1)


def test_sample_rejects_negative_seed():
    with pytest.raises(HwlatError, match="seed -1"):
        SPACE.sample(3, seed=-1)


# ---------------------------------------------------------------- encodings


def test_onehot_encoding():
    archs = [ALL_NONE, ALL_CONV3, MIXED]
    x = SPACE.encode(archs, "onehot")
    assert x.shape == (3, len(EDGES) * len(OPS)) == (3, 30)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x.reshape(3, 6, 5).sum(axis=2), 1)
    assert (x[0].reshape(6, 5)[:, OPS.index("none")] == 1).all()
    assert (x[1].reshape(6, 5)[:, OPS.index("nor_conv_3x3")] == 1).all()
    mixed = [OPS[k] for k in x[2].reshape(6, 5).argmax(axis=1)]
    assert mixed == ["nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none", "nor_conv_3x3"]
    np.testing.assert_array_equal(SPACE.encode(archs), x)  # onehot is the default


def test_adjacency_encoding():
    x = SPACE.encode([ALL_NONE, MIXED], "adjacency")
    assert x.shape == (2, 64 + 8 * 7)
    adj = x[:, :64].reshape(2, 8, 8)
    np.testing.assert_array_equal(adj[0], adj[1])
    # nodes: input, 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2, output; the matrix BRP-NAS's get_matrix_and_ops starts from
    expected = np.zeros((8, 8))
    for src, dsts in {0: [1, 2, 4], 1: [3, 5], 2: [6], 3: [6], 4: [7], 5: [7], 6: [7]}.items():
        expected[src, dsts] = 1
    np.testing.assert_array_equal(adj[0], expected)
    types = ["input", *OPS, "output"]
    nodes = x[1, 64:].reshape(8, 7)
    np.testing.assert_array_equal(nodes.sum(axis=1), 1)
    assert [types[k] for k in nodes.argmax(axis=1)] == [
        "input", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none", "nor_conv_3x3", "output",
    ]


def test_encode_rejects_unknown_kind_and_bad_archs():
    with pytest.raises(HwlatError, match="encoding kind 'graph' unknown .*onehot, adjacency"):
        SPACE.encode([ALL_NONE], "graph")
    with pytest.raises(HwlatError, match="unknown op 'conv5'"):
        SPACE.encode([ALL_NONE, cell("conv5", *["none"] * 5)])
    with pytest.raises(HwlatError, match="single string"):
        SPACE.encode(ALL_NONE)


# ---------------------------------------------------------------- the real network


def test_build_runs_in_eval_mode_with_arch_seeded_weights():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    model = SPACE.build(MIXED)
    assert torch.equal(before, torch.random.get_rng_state())  # global RNG untouched
    assert not model.training
    assert SPACE.input_shape(2) == (2, 3, 32, 32)
    with torch.no_grad():
        out = model(torch.randn(SPACE.input_shape(2)))
    assert out.shape == (2, 10)
    again = SPACE.build(MIXED).state_dict()
    assert all(torch.equal(t, again[k]) for k, t in model.state_dict().items())
    other = SPACE.build(ALL_CONV3).state_dict()
    key = "cells.0.layers.0.1.weight"  # first cell, edge 1<-0, the conv inside ReLU-Conv-BN
    assert not torch.equal(model.state_dict()[key], other[key])


def analytic_macs(arch: str) -> int:
    """Conv + linear multiply-adds of the NB201 CIFAR-10 network, derived by hand."""
    ops = SPACE.ops(arch)
    fixed = (
        32 * 32 * 3 * 16 * 9  # stem conv 3x3, 3 -> 16 at 32x32
        + 16 * 16 * (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32)  # reduction 1 at 16x16: conv_a, conv_b, shortcut 1x1
        + 8 * 8 * (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64)  # reduction 2 at 8x8
        + 64 * 10  # classifier
    )
    per_cell = sum(9 if op == "nor_conv_3x3" else 1 if op == "nor_conv_1x1" else 0 for op in ops)
    # a k x k conv at width C on HxW costs H*W*C*C*k*k; H*W*C*C is 2**18 in all three stages
    return fixed + 3 * 5 * (32 * 32 * 16 * 16) * per_cell


def analytic_params(arch: str) -> int:
    """Trainable parameters (conv weights, BN affine, linear) of the NB201 network, derived by hand."""
    ops = SPACE.ops(arch)
    fixed = (
        3 * 16 * 9 + 2 * 16  # stem conv + BN
        + (16 * 32 * 9 + 2 * 32) + (32 * 32 * 9 + 2 * 32) + 16 * 32  # reduction 1
        + (32 * 64 * 9 + 2 * 64) + (64 * 64 * 9 + 2 * 64) + 32 * 64  # reduction 2
        + 2 * 64 + 64 * 10 + 10  # last BN, classifier
    )
    per_width = {c: sum(c * c * 9 + 2 * c if op == "nor_conv_3x3" else c * c + 2 * c if op == "nor_conv_1x1" else 0
                        for op in ops) for c in (16, 32, 64)}
    return fixed + 5 * sum(per_width.values())


@pytest.mark.parametrize("arch", [ALL_NONE, ALL_CONV3, MIXED, cell(*["nor_conv_1x1"] * 6), cell(*["avg_pool_3x3"] * 6)])
def test_flops_and_params_match_hand_derived_counts(arch):
    assert SPACE.flops(arch) == analytic_macs(arch)
    assert SPACE.params(arch) == analytic_params(arch)


@pytest.mark.parametrize("arch", [ALL_CONV3, MIXED])
def test_flops_match_torch_flop_counter(arch):
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        SPACE.build(arch)(torch.zeros(SPACE.input_shape(1)))
    assert SPACE.flops(arch) * 2 == counter.get_total_flops()  # torch counts 2 FLOPs per multiply-add


def test_extremes_match_the_nas_bench_201_paper():
    # Paper (CIFAR-10): FLOPs 7.78M..220.11M, params 0.073M..1.531M. Measured: all-none 7,783,040 FLOPs and
    # 73,306 params; all-conv3x3 220,119,680 FLOPs and 1,531,546 params. All four match the published digits
    # once truncated; the two maxima (220.1197M, 1.531546M) would round up, so the paper truncates.
    def truncate(value: float, digits: int) -> float:
        return int(value * 10**digits) / 10**digits

    assert truncate(SPACE.flops(ALL_NONE) / 1e6, 2) == 7.78
    assert truncate(SPACE.flops(ALL_CONV3) / 1e6, 2) == 220.11
    assert truncate(SPACE.params(ALL_NONE) / 1e6, 3) == 0.073
    assert truncate(SPACE.params(ALL_CONV3) / 1e6, 3) == 1.531


# ---------------------------------------------------------------- ONNX export


@pytest.mark.parametrize("arch", [ALL_CONV3, MIXED])
def test_onnx_export_matches_torch(arch, tmp_path):
    import onnxruntime as ort

    path = onnx_path(SPACE, arch, cache_dir=tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    model = SPACE.build(arch)
    for batch in (1, 4):
        x = torch.randn(SPACE.input_shape(batch), generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_onnx_path_caches_under_hwlat_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLAT_HOME", str(tmp_path))
    first = onnx_path(SPACE, f" {ALL_NONE} ")
    assert first.parent == tmp_path / "cache" / "onnx" / "nb201"
    assert first.suffix == ".onnx"
    stamp = first.stat().st_mtime_ns
    assert onnx_path(SPACE, ALL_NONE) == first  # same canonical arch -> same file, not re-exported
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temp files left behind
    with pytest.raises(HwlatError, match="unknown op"):
        onnx_path(SPACE, cell("conv5", *["none"] * 5))


# ---------------------------------------------------------------- registry


def test_get_space_names_and_alias():
    assert isinstance(get_space("nb201"), NasBench201Space)
    assert isinstance(get_space("nasbench201"), BaseSpace)
    assert SPACES == ("nb201", "fbnet", "ofa", "hybrid-lm", "shiftadd")
    assert all(get_space(name).name == name for name in SPACES)
    with pytest.raises(HwlatError, match=r"unknown search space 'nb101' \(known: fbnet, hybrid-lm, nasbench201, nb201, ofa, shiftadd\)"):
        get_space("nb101")
    with pytest.raises(HwlatError, match="unknown search space None"):
        get_space(None)


def test_importing_spaces_does_not_import_torch():
    code = "import sys, hwlat.spaces; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

