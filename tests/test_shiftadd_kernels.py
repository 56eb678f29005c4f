"""TVM kernels of the ShiftAdd primitives and the whole-ViT Relax module.

Kernels must equal the NumPy references bit for bit (odd row and reduction sizes included); the GPU schedule is
checked on this CPU-only machine as far as possible without a GPU: TVM's GPU-code verifier, the generated CUDA
source, and nvcc compiling it to PTX when nvcc is installed (nothing is launched). The whole module must compute
what the PyTorch ViT computes.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import tvm

from hwlat._errors import HwlatError
from hwlat.profilers import MeasurementProtocol
from hwlat.profilers.runtimes._tvm import tvm_target
from hwlat.shiftadd import _kernels as kernels
from hwlat.shiftadd._config import BlockChoice, ViTConfig
from hwlat.shiftadd._reference import (hamming_scores_reference, pack_codes, shift_linear_reference,
                                       sign_matmul_reference)
from hwlat.shiftadd._tvm_latency import block_latency_table, measure_vit_latency, table_key, table_path
from hwlat.shiftadd._tvm_model import (compile_module, moe_split, part_module, run_module, vit_module,
                                       weights_from_torch)
from hwlat.shiftadd._vit import build_vit

TINY = ViTConfig(image_size=8, patch_size=2, channels=1, dim=64, depth=3, heads=2, mlp_ratio=4, num_classes=10)


@pytest.fixture(scope="module")
def target():
    return tvm_target(None, threads=2)


def run_kernel(func, target, inputs, **tiles) -> np.ndarray:
    module = kernels.build(kernels.schedule_cpu(func, target, **tiles), target)
    shape, dtype = kernels.output_spec(func)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs] + [tvm.runtime.tensor(np.zeros(shape, dtype))]
    module["main"](*args)
    return args[-1].numpy()


@pytest.mark.parametrize("sign_op", kernels.SIGN_OPS)
@pytest.mark.parametrize("rows,in_features,out_features", [(13, 37, 32), (1, 5, 64), (197, 192, 96)])
def test_shift_linear_is_bit_exact(target, sign_op, rows, in_features, out_features):
    rng = np.random.default_rng(rows)
    x = rng.integers(-2 ** 24, 2 ** 24, (rows, in_features), dtype=np.int32)
    sign = rng.integers(-1, 2, (in_features, out_features), dtype=np.int8)
    shift = rng.integers(0, 15, (in_features, out_features), dtype=np.int8)
    out = run_kernel(kernels.shift_linear(rows, in_features, out_features, sign_op), target, [x, sign, shift])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, shift_linear_reference(x, sign.T, shift.T))


@pytest.mark.parametrize("sign_op", kernels.SIGN_OPS)
def test_shift_linear_is_exact_when_partial_sums_overflow_int32(target, sign_op):
    """The accumulator wraps (uint32): intermediate overflow is harmless when the true result fits in int32."""
    in_features = 64
    x = np.full((2, in_features), 2 ** 30, dtype=np.int32)
    x[1, 0] = np.iinfo(np.int32).min  # -2**31 times a sign of -1 (shift 0) is the edge case of the negation
    sign = np.zeros((in_features, 32), np.int8)
    sign[:32], sign[32:] = 1, -1  # column 0 of row 0: partial sums reach 2**35, the total is 0
    sign[:, 1] = 0
    sign[:2, 1] = -1  # column 1 of row 1: -(-2**31) - 2**30 = 2**30
    shift = np.zeros((in_features, 32), np.int8)
    reference = shift_linear_reference(x, sign.T, shift.T)
    assert np.abs(np.cumsum(x[0].astype(np.int64) * sign[:, 0])).max() > 2 ** 31  # partial sums overflow
    fits = (reference >= -2 ** 31) & (reference < 2 ** 31)
    assert fits[0, 0] and fits[1, 1] and not fits.all()
    out = run_kernel(kernels.shift_linear(2, in_features, 32, sign_op), target, [x, sign, shift])
    np.testing.assert_array_equal(out[fits], reference[fits])


@pytest.mark.parametrize("bits", [64, 100])
def test_hamming_scores_are_bit_exact_with_padded_keys(target, bits):
    rng = np.random.default_rng(bits)
    heads, queries, keys = 3, 19, 19
    padded = kernels.round_up(keys, kernels.vector_lanes(target))
    q, k = rng.standard_normal((heads, queries, bits)), rng.standard_normal((heads, padded, bits))
    q_codes, k_codes = pack_codes(q), pack_codes(k)
    out = run_kernel(kernels.hamming_scores(heads, queries, padded, bits), target,
                     [q_codes, k_codes.transpose(0, 2, 1)])
    np.testing.assert_array_equal(out[..., :keys], hamming_scores_reference(q_codes, k_codes, bits)[..., :keys])
    np.testing.assert_array_equal(out, np.where(q >= 0, 1, -1) @ np.where(k >= 0, 1, -1).transpose(0, 2, 1))


@pytest.mark.parametrize("sign_op", kernels.SIGN_OPS)
def test_sign_matmul_is_bit_exact_for_integers_and_close_for_floats(target, sign_op):
    rng = np.random.default_rng(1)
    signs = rng.integers(-1, 2, (3, 11, 197), dtype=np.int8)
    values = rng.integers(-2 ** 20, 2 ** 20, (3, 197, 64), dtype=np.int32)
    out = run_kernel(kernels.sign_matmul(3, 11, 197, 64, "int32", sign_op), target, [signs, values])
    np.testing.assert_array_equal(out, sign_matmul_reference(signs, values))
    floats = rng.standard_normal((3, 197, 64)).astype(np.float32)
    out = run_kernel(kernels.sign_matmul(3, 11, 197, 64, "float32", sign_op), target, [signs, floats])
    np.testing.assert_allclose(out, sign_matmul_reference(signs, floats), rtol=1e-4, atol=1e-4)


def test_dense_baselines_match_numpy(target):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((13, 40)).astype(np.float32), rng.standard_normal((40, 64)).astype(np.float32)
    np.testing.assert_allclose(run_kernel(kernels.dense(13, 40, 64), target, [x, w]), x @ w, rtol=1e-4, atol=1e-4)
    xi, wi = rng.integers(-99, 99, (13, 40), dtype=np.int32), rng.integers(-99, 99, (40, 64), dtype=np.int32)
    np.testing.assert_array_equal(run_kernel(kernels.dense(13, 40, 64, "int32"), target, [xi, wi]), xi @ wi)
    a, b = rng.standard_normal((2, 7, 9)).astype(np.float32), rng.standard_normal((2, 9, 16)).astype(np.float32)
    np.testing.assert_allclose(run_kernel(kernels.batch_matmul(2, 7, 9, 16), target, [a, b], col_tile=16), a @ b,
                               rtol=1e-4, atol=1e-4)


def test_bad_kernel_arguments_are_one_line_errors(target):
    with pytest.raises(HwlatError, match="not a multiple of the column tile 16.*pad"):
        kernels.schedule_cpu(kernels.shift_linear(4, 8, 40), target)
    with pytest.raises(HwlatError, match="unknown sign_op"):
        kernels.shift_linear(4, 8, 32, sign_op="shift")


def test_cuda_schedule_lowers_verifies_and_generates_source():
    """The GPU path without a GPU: thread-bound schedules pass TVM's GPU verifier and yield CUDA C."""
    cuda = tvm.target.Target({"kind": "cuda", "arch": "sm_80"})
    funcs = {"shift": kernels.shift_linear(197, 192, 768), "hamming": kernels.hamming_scores(3, 197, 208, 64),
             "sign": kernels.sign_matmul(3, 197, 64, 64)}
    for name, func in funcs.items():
        scheduled = kernels.schedule_gpu(func, cuda)
        assert kernels.check_gpu_code(scheduled, cuda), name
        source = kernels.cuda_source(scheduled, cuda)
        assert "__global__" in source and "threadIdx.x" in source, name
    assert "__popcll" in kernels.cuda_source(kernels.schedule_gpu(funcs["hamming"], cuda), cuda)
    too_wide = kernels.schedule_gpu(funcs["shift"], cuda, row_tile=64, col_tile=32)  # 2048 threads per block
    assert not kernels.check_gpu_code(too_wide, cuda)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_source_compiles_to_ptx_with_nvcc(tmp_path):
    cuda = tvm.target.Target({"kind": "cuda", "arch": "sm_80"})
    source = kernels.cuda_source(kernels.schedule_gpu(kernels.shift_linear(197, 192, 768), cuda), cuda)
    (tmp_path / "shift.cu").write_text(source)
    subprocess.run(["nvcc", "--ptx", "-arch=sm_80", "-o", str(tmp_path / "shift.ptx"), str(tmp_path / "shift.cu")],
                   check=True, capture_output=True, timeout=120)
    assert ".entry main_kernel" in (tmp_path / "shift.ptx").read_text()


def test_tuning_records_are_reused_without_retuning(target, tmp_path):
    """A kernel with a record in the work_dir is compiled from it; `tune` does not search again."""
    from tvm.s_tir import meta_schedule as ms

    func = kernels.shift_linear(13, 37, 32)
    database = ms.database.JSONDatabase(work_dir=str(tmp_path))
    mod = tvm.IRModule({"main": func})
    assert not kernels.tuned_in(database, mod, target)
    schedule = tvm.s_tir.Schedule(mod)  # a valid record by hand: tuning for real takes minutes
    schedule.parallel(schedule.get_loops(schedule.get_sblock("acc"))[0])
    database.commit_tuning_record(ms.database.TuningRecord(schedule.trace, database.commit_workload(mod), [1e-3],
                                                           target))
    assert kernels.tuned_in(ms.database.JSONDatabase(work_dir=str(tmp_path)), mod, target)
    tuned = kernels.tune(func, target, tmp_path, trials=1)
    assert "parallel" in tuned.script()
    rng = np.random.default_rng(3)
    inputs = [rng.integers(-2 ** 20, 2 ** 20, (13, 37), dtype=np.int32), rng.integers(-1, 2, (37, 32), dtype=np.int8),
              rng.integers(0, 15, (37, 32), dtype=np.int8)]
    module = kernels.build(tuned, target)
    out = tvm.runtime.tensor(np.zeros((13, 32), np.int32))
    module["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
    np.testing.assert_array_equal(out.numpy(), shift_linear_reference(inputs[0], inputs[1].T, inputs[2].T))


def _torch_vit(choices, seed=0):
    torch.manual_seed(seed)
    model = build_vit(TINY, choices).eval()
    for module in model.modules():
        if hasattr(module, "integer"):
            module.integer = True  # the exact integer path, which the TVM kernels compute
    return model


def test_whole_vit_module_matches_the_pytorch_model(target):
    choices = (BlockChoice("softmax", "dense"), BlockChoice("binary", "shift"), BlockChoice("binary-linear", "dense"))
    model = _torch_vit(choices)
    images = np.random.default_rng(4).standard_normal((2, 1, 8, 8)).astype(np.float32)
    executable = compile_module(vit_module(TINY, choices, target, weights=weights_from_torch(model)), target)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    for image, logits in zip(images, expected):
        out = run_module(executable, image)
        assert out.shape == (1, 32)
        np.testing.assert_allclose(out[0, :TINY.num_classes], logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fraction", [0.0, 0.6, 1.0])
def test_moe_block_sends_the_static_fraction_to_the_shift_expert(target, fraction):
    """A MoE block equals its experts applied to the tokens `moe_split` assigns them, plus the residual."""
    choice = BlockChoice("softmax", "moe")
    model = _torch_vit((choice,) * TINY.depth)
    block = model.blocks[0]
    mod = part_module(TINY, "block", target, choice=choice, moe_shift_fraction=fraction,
                      weights=weights_from_torch(model))
    padded = kernels.round_up(TINY.tokens, kernels.vector_lanes(target))
    tokens = np.random.default_rng(5).standard_normal((padded, TINY.dim)).astype(np.float32)
    out = run_module(compile_module(mod, target), tokens)[:TINY.tokens]
    to_shift, to_dense = moe_split(TINY.tokens, fraction)
    assert len(to_shift) == round(fraction * TINY.tokens) and len(to_shift) + len(to_dense) == TINY.tokens
    with torch.no_grad():
        x = torch.from_numpy(tokens[None, :TINY.tokens])
        x = x + block.attn(block.norm1(x))
        normed = block.norm2(x)[0]
        experts = [expert(normed) for expert in block.mlp.experts]  # [dense, shift]
        mask = torch.zeros(TINY.tokens, 1, dtype=torch.bool)
        mask[torch.from_numpy(to_shift).long()] = True
        expected = (x[0] + torch.where(mask, experts[1], experts[0])).numpy()
    # float rounding upstream can move a value across a Q16.16 step: a few units of 2**-16 at most
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_bad_model_arguments_are_one_line_errors(target):
    with pytest.raises(HwlatError, match="need 3 BlockChoice"):
        vit_module(TINY, (BlockChoice(),), target)
    with pytest.raises(HwlatError, match="moe_shift_fraction must be in"):
        moe_split(17, 1.5)
    with pytest.raises(HwlatError, match="unknown part"):
        part_module(TINY, "neck", target)


@pytest.mark.slow
def test_latency_table_is_cached_resumable_and_sums_to_a_prediction(monkeypatch):
    from hwlat.shiftadd import _tvm_latency

    monkeypatch.setattr(_tvm_latency, "BLOCK_COPIES", 2)  # fewer blocks and passes than the default, same logic
    monkeypatch.setattr(_tvm_latency, "ROUNDS", 2)
    protocol = MeasurementProtocol(warmup_runs=2, warmup_seconds=0.0, min_repeats=6, max_repeats=20,
                                   time_budget_s=0.05)
    seen = []
    table = block_latency_table(TINY, threads=1, protocol=protocol, on_item=lambda name, stats: seen.append(
        (name, stats is None)))
    assert len(table.blocks_ms) == 9 and table.stem_ms > 0 and table.head_ms > 0 and not any(c for _, c in seen)
    path = table_path(table_key(TINY, threads=1, moe_shift_fraction=0.6, target=None))
    saved = json.loads(path.read_text())
    rounds = saved["entries"]["binary/moe"]
    assert len(rounds) == _tvm_latency.ROUNDS
    assert table.blocks_ms["binary/moe"] == min(r["median_ms"] for r in rounds) / 2  # per block, best pass
    choices = (BlockChoice("softmax", "dense"), BlockChoice("binary", "moe"), BlockChoice("binary-linear", "shift"))
    assert table.predict(choices) == pytest.approx(table.stem_ms + table.head_ms + table.blocks_ms["softmax/dense"]
                                                   + table.blocks_ms["binary/moe"]
                                                   + table.blocks_ms["binary-linear/shift"])
    saved["entries"]["binary/moe"].pop()  # as if interrupted before the last measurement
    path.write_text(json.dumps(saved))
    seen.clear()
    again = block_latency_table(TINY, threads=1, protocol=protocol, on_item=lambda name, stats: seen.append(
        (name, stats is None)))
    assert [name for name, cached in seen if not cached] == ["binary/moe"]
    assert again.blocks_ms["softmax/dense"] == table.blocks_ms["softmax/dense"]
    whole = measure_vit_latency(TINY, choices, threads=1, protocol=protocol)
    assert whole.median_ms > 0 and whole.n >= 6
