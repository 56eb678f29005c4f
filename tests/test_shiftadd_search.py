"""The ShiftAdd per-block choice as a search space and the `hwlat shiftadd` command end to end."""

from __future__ import annotations

import json

import pytest

from hwlat._errors import HwlatError
from hwlat.shiftadd import BlockChoice, uniform_choices
from hwlat.spaces import get_space
from hwlat.store import MeasurementStore


def test_space_strings_choices_and_encoding_round_trip():
    space = get_space("shiftadd")
    archs = space.sample(20, seed=3)
    assert archs == space.sample(20, seed=3) and len(set(archs)) == 20
    for arch in archs:
        assert space.canonical(f" {arch} ") == arch and space.from_choices(space.to_choices(arch)) == arch
    assert set(space.choices()) == {f"{kind}{i:02d}" for kind in ("attention", "mlp") for i in range(12)}
    rows = space.encode(archs)
    assert rows.shape == (20, 12 * 6) and (rows.sum(axis=1) == 24).all()
    original = space.from_blocks(uniform_choices(12))
    assert space.blocks(original) == uniform_choices(12)
    # DeiT-Tiny's ~1.26 G multiply-adds; shift MLPs remove the MLPs' two linears in every block, less one
    # fixed-point scaling multiply per input and output element
    all_shift = space.from_blocks(uniform_choices(12, mlp="shift"))
    assert 1.2e9 < space.flops(original) < 1.3e9
    assert space.flops(original) - space.flops(all_shift) == 12 * 2 * 197 * (192 * 768 - (192 + 768))


@pytest.mark.parametrize("arch, message", [
    ("softmax+dense", "1 block"),
    ("|".join(["softmax+dense"] * 11 + ["softmax-dense"]), "block 11 'softmax-dense' is not"),
    ("|".join(["softmax+dense"] * 11 + ["softmax+conv"]), "block 11: shiftadd: unknown mlp 'conv'"),
])
def test_space_bad_archs_name_the_problem(arch, message):
    with pytest.raises(HwlatError, match=message):
        get_space("shiftadd").canonical(arch)


def test_space_builds_the_chosen_network():
    from hwlat.shiftadd._moe import MoEMlp

    space = get_space("shiftadd")
    blocks = [BlockChoice("binary", "moe")] + [BlockChoice()] * 11
    model = space.build(space.from_blocks(blocks))
    assert sum(isinstance(m, MoEMlp) for m in model.modules()) == 1


@pytest.mark.parametrize("args, message", [
    (["--model", "vit-huge"], "unknown model 'vit-huge'"),
    (["--device", "board"], "this machine only"),
    (["--trials", "0"], "--trials must be a positive number"),
    (["--moe-shift-fraction", "1.5"], "between 0 and 1"),
    (["--model", "vit-digits", "--processes", "0"], "--processes must be 1 or more"),
])
def test_cli_bad_inputs_are_one_line_errors(hwlat, args, message):
    code, _out, err = hwlat("shiftadd", *args)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_searches_measures_the_front_and_reports(hwlat, tmp_path):
    """A short real run on the digits shape: train, latency table with TVM, search, whole-model checks, report."""
    prefix = tmp_path / "shiftadd"
    code, out, err = hwlat("shiftadd", "--model", "vit-digits", "--trials", "3", "--verify", "1", "--base-epochs", "2",
                           "--finetune-epochs", "1", "--time-budget", "0.1", "--processes", "2", "--report", str(prefix),
                           "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["summary"]["completed"] == 3 and result["front"]
    assert result["original"]["measured_latency_ms"] > 0 and 0.1 < result["original"]["accuracy"] <= 1
    measured = [row["measured_latency_ms"] for row in result["front"] if row["measured_latency_ms"] is not None]
    assert len(measured) == 1 and measured[0] > 0
    # each measured model was timed in 2 processes (tags process0/1); the smallest median is the one reported
    rows = MeasurementStore().frame(space="shiftadd")
    assert set(rows["tag"]) == {"process0", "process1"} and rows.groupby("arch").size().eq(2).all()
    assert result["original"]["measured_latency_ms"] == rows[rows["arch"] == result["original"]["arch"]]["median_ms"].min()
    saved = json.loads(prefix.with_suffix(".json").read_text())
    assert saved["settings"]["original_model"]["arch"] == result["original"]["arch"]
    # the whole-model latencies went to the measurement store: a rerun measures nothing again
    code, out, _ = hwlat("shiftadd", "--model", "vit-digits", "--trials", "3", "--verify", "1", "--base-epochs", "2",
                         "--finetune-epochs", "1", "--time-budget", "0.1", "--processes", "2", "--json")
    assert code == 0 and json.loads(out)["original"]["measured_latency_ms"] == result["original"]["measured_latency_ms"]
