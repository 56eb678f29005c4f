"""ShiftAdd kernels and whole ViTs compiled by TVM on this CPU, against fp32 in TVM, ONNX Runtime and PyTorch.

Part "kernels": DeiT-Tiny shapes (197 tokens, dim 192, 3 heads x 64, MLP 768). Shift-linear for the MLP linears,
binary attention scores by XOR + popcount and by sign additions, and the binary-linear form's K_b^T V and
Q_b (K_b^T V) by sign additions; each beside fp32 with the same TVM schedule, ONNX Runtime and PyTorch. With
`--tune`, MetaSchedule schedules too (records kept in `--records`, so a rerun does not tune again;
`--tune-limit` bounds how many new kernels one run tunes).

Part "model": whole DeiT-Tiny-shaped ViTs in TVM (original, all-shift, all-binary, mixed, and any `--arch` of
the `shiftadd` space, e.g. the one a `hwlat shiftadd` search chose) measured, and predicted by the per-block
latency table (stem + blocks + head); the original also in PyTorch eager and ONNX Runtime (the `_vit` model
with the same shape). Beside each: test accuracy of the digits ViT with the same per-block choices after the
library's fine-tuning, and the estimated energy of the DeiT-Tiny shape.

Every runtime is timed in its own process with hwlat's measurement protocol (medians). Hold the bench lock:
    flock /tmp/hwlat-bench.lock .venv/bin/python benchmarks/shiftadd_kernels.py --part kernels
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from hwlat._errors import HwlatError
from hwlat._home import hwlat_home
from hwlat.profilers._protocol import MeasurementProtocol, measure, perf_counter_timer
from hwlat.shiftadd._config import VIT_TINY, BlockChoice, uniform_choices
from hwlat.shiftadd._tvm_latency import SpawnedWorker, block_latency_table, measure_vit_latency

TOKENS, DIM, HIDDEN, HEADS, HEAD_DIM = 197, 192, 768, 3, 64
#: kernel groups: (label, shape of A, shape of B) of the fp32 baseline A @ B in ONNX Runtime and PyTorch
GROUPS = [
    ("fc1 197x192 @ 192x768", (TOKENS, DIM), (DIM, HIDDEN)),
    ("fc2 197x768 @ 768x192", (TOKENS, HIDDEN), (HIDDEN, DIM)),
    ("scores 3x197x64 @ 3x64x197", (HEADS, TOKENS, HEAD_DIM), (HEADS, HEAD_DIM, TOKENS)),
    ("K_b^T V 3x64x197 @ 3x197x64", (HEADS, HEAD_DIM, TOKENS), (HEADS, TOKENS, HEAD_DIM)),
    ("Q_b (K_b^T V) 3x197x64 @ 3x64x64", (HEADS, TOKENS, HEAD_DIM), (HEADS, HEAD_DIM, HEAD_DIM)),
]
#: what `--tune` tunes with MetaSchedule, by (group, kernel label)
TUNED = [(GROUPS[0][0], "shift-linear (x sign)"), (GROUPS[0][0], "fp32 dense"),
         (GROUPS[1][0], "shift-linear (x sign)"), (GROUPS[1][0], "fp32 dense"),
         (GROUPS[2][0], "XOR + popcount"), (GROUPS[2][0], "fp32 dense")]


def tvm_kernels(target) -> list[tuple[str, str, object]]:
    """(group, label, unscheduled PrimFunc) of every TVM kernel; vectorized token axes padded to the vector width."""
    from hwlat.shiftadd import _kernels as k

    keys = k.round_up(TOKENS, k.vector_lanes(target))
    rows = []
    for (group, a, b), (n, i, o) in zip(GROUPS[:2], [(TOKENS, DIM, HIDDEN), (TOKENS, HIDDEN, DIM)]):
        rows += [(group, "shift-linear (x sign)", k.shift_linear(n, i, o, "multiply")),
                 (group, "shift-linear (select sign)", k.shift_linear(n, i, o, "select")),
                 (group, "int32 dense", k.dense(n, i, o, "int32")),
                 (group, "fp32 dense", k.dense(n, i, o))]
    rows += [(GROUPS[2][0], "XOR + popcount", k.hamming_scores(HEADS, TOKENS, keys, HEAD_DIM)),
             (GROUPS[2][0], "sign additions int32", k.sign_matmul(HEADS, TOKENS, HEAD_DIM, keys)),
             (GROUPS[2][0], "fp32 dense", k.batch_matmul(HEADS, TOKENS, HEAD_DIM, keys))]
    for group, (batch, n, inner, cols) in [(GROUPS[3][0], (HEADS, HEAD_DIM, TOKENS, HEAD_DIM)),
                                           (GROUPS[4][0], (HEADS, TOKENS, HEAD_DIM, HEAD_DIM))]:
        rows += [(group, "sign additions int32", k.sign_matmul(batch, n, inner, cols)),
                 (group, "sign additions fp32", k.sign_matmul(batch, n, inner, cols, "float32")),
                 (group, "fp32 dense", k.batch_matmul(batch, n, inner, cols))]
    return rows


def time_tvm_kernels(threads: int, protocol: dict, records: str | None, trials: int, tune_limit: int) -> list:
    """In a worker: (group, label, schedule, median ms) of every TVM kernel, hand-scheduled and tuned."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from hwlat.profilers.runtimes._tvm import tvm_target
    from hwlat.shiftadd import _kernels as k

    target, rng, results = tvm_target(None, threads), np.random.default_rng(0), []
    if records:
        Path(records).mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(work_dir=records) if records else None
    newly_tuned = 0
    for group, label, func in tvm_kernels(target):
        schedules = [("hand", k.schedule_cpu(func, target))]
        if records and (group, label) in TUNED:
            known = k.tuned_in(database, tvm.IRModule({"main": func}), target)
            if known or newly_tuned < tune_limit:
                newly_tuned += not known
                schedules.append(("metaschedule", k.tune(func, target, records, trials)))
                database = ms.database.JSONDatabase(work_dir=records)
        shape, dtype = k.output_spec(func)
        args = [tvm.runtime.tensor(a) for a in k.random_inputs(func, rng)] + [tvm.runtime.tensor(np.zeros(shape,
                                                                                                          dtype))]
        for schedule, scheduled in schedules:
            main = k.build(scheduled, target)["main"]
            stats = measure(perf_counter_timer(lambda: main(*args)), MeasurementProtocol(**protocol))
            results.append((group, label, schedule, stats.median_ms))
    return results


def time_torch_matmuls(threads: int, protocol: dict) -> list:
    """In a worker: median ms of each group's fp32 A @ B in PyTorch eager."""
    import torch

    torch.set_num_threads(threads)
    results = []
    for group, a_shape, b_shape in GROUPS:
        a, b = torch.randn(a_shape), torch.randn(b_shape)

        def run_once(a=a, b=b):
            with torch.inference_mode():
                torch.matmul(a, b)

        results.append((group, measure(perf_counter_timer(run_once), MeasurementProtocol(**protocol)).median_ms))
    return results


def time_onnxruntime_matmuls(threads: int, protocol: dict) -> list:
    """In a worker: median ms of each group's fp32 A @ B in ONNX Runtime (B a constant for the linears)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    rng, results = np.random.default_rng(0), []
    for index, (group, a_shape, b_shape) in enumerate(GROUPS):
        b = rng.standard_normal(b_shape).astype(np.float32)
        linear = index < 2
        inputs = [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)]
        initializers = [numpy_helper.from_array(b, "b")] if linear else []
        if not linear:
            inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape))
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "matmul", inputs,
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {"a": rng.standard_normal(a_shape).astype(np.float32)}
        if not linear:
            feed["b"] = b
        results.append((group, measure(perf_counter_timer(lambda s=session, f=feed: s.run(None, f)),
                                       MeasurementProtocol(**protocol)).median_ms))
    return results


def time_torch_vit(threads: int, protocol: dict, onnx_dir: str | None, choices=None) -> float:
    """In a worker: median ms of the ViT with `choices` (`_vit`, DeiT-Tiny shape; default the original) in PyTorch
    eager, or in ONNX Runtime when `onnx_dir` is given (exported there first). These runtimes have no shift or
    popcount kernels: shift weights run as float matmuls and binary codes as float products."""
    import torch

    from hwlat.shiftadd._vit import build_vit

    torch.manual_seed(0)
    model = build_vit(VIT_TINY, choices).eval()
    shape = (1, VIT_TINY.channels, VIT_TINY.image_size, VIT_TINY.image_size)
    images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if onnx_dir is None:
        torch.set_num_threads(threads)
        inputs = torch.from_numpy(images)

        def run_once():
            with torch.inference_mode():
                model(inputs)

        return measure(perf_counter_timer(run_once), MeasurementProtocol(**protocol)).median_ms
    import onnxruntime as ort

    from hwlat.spaces._export import export_onnx

    path = export_onnx(model, shape, Path(onnx_dir) / "vit.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return measure(perf_counter_timer(lambda: session.run(None, {"input": images})),
                   MeasurementProtocol(**protocol)).median_ms


def kernel_table(args, console: Console) -> None:
    protocol = MeasurementProtocol(time_budget_s=args.budget).as_dict()
    records = str(Path(args.records).resolve()) if args.tune else None
    console.print(f"kernels: {args.threads} threads, protocol budget {args.budget} s per kernel"
                  + (f", MetaSchedule records in {records} ({args.trials} trials per new kernel)" if records else ""))
    with SpawnedWorker(args.threads) as worker:
        tvm_rows = worker.call(time_tvm_kernels, args.threads, protocol, records, args.trials, args.tune_limit)
    with SpawnedWorker(args.threads) as worker:
        torch_ms = dict(worker.call(time_torch_matmuls, args.threads, protocol))
    with SpawnedWorker(args.threads) as worker:
        ort_ms = dict(worker.call(time_onnxruntime_matmuls, args.threads, protocol))
    console.print("\nratio = baseline / kernel (> 1: the kernel is faster)")
    header = f"{'operation':34s} {'TVM kernel':28s} {'schedule':13s} {'ms':>8s} {'/TVM fp32':>9s} " \
             f"{'/ORT fp32':>9s} {'/torch fp32':>11s}"
    console.print(header, highlight=False)
    for group, *_ in GROUPS:
        rows = [r for r in tvm_rows if r[0] == group]
        fp32 = {schedule: ms for _, label, schedule, ms in rows if label == "fp32 dense"}
        for _, label, schedule, ms in rows:
            same = fp32.get(schedule, fp32["hand"])
            console.print(f"{group:34s} {label:28s} {schedule:13s} {ms:8.4f} {same / ms:9.2f} "
                          f"{ort_ms[group] / ms:9.2f} {torch_ms[group] / ms:11.2f}", highlight=False)
        console.print(f"{group:34s} {'(ONNX Runtime fp32)':28s} {'':13s} {ort_ms[group]:8.4f}", highlight=False)
        console.print(f"{group:34s} {'(PyTorch fp32)':28s} {'':13s} {torch_ms[group]:8.4f}", highlight=False)


def model_variants(archs: list[str], seed: int = 0) -> dict[str, tuple[BlockChoice, ...]]:
    """Named per-block choices of DeiT-Tiny: uniform ones, three random mixes and the given `shiftadd` archs."""
    from hwlat.shiftadd._config import ATTENTION_KINDS, MLP_KINDS
    from hwlat.spaces import get_space

    depth = VIT_TINY.depth
    variants = {"original (softmax + dense)": uniform_choices(depth),
                "all shift MLP": uniform_choices(depth, mlp="shift"),
                "all MoE MLP": uniform_choices(depth, mlp="moe"),
                "all Hamming attention": uniform_choices(depth, attention="binary"),
                "all binary-linear attention": uniform_choices(depth, attention="binary-linear"),
                "binary-linear + shift": uniform_choices(depth, "binary-linear", "shift"),
                "binary-linear + MoE": uniform_choices(depth, "binary-linear", "moe")}
    rng = np.random.default_rng(seed)
    for index in range(3):
        variants[f"random mix {index + 1}"] = tuple(
            BlockChoice(ATTENTION_KINDS[a], MLP_KINDS[m])
            for a, m in zip(rng.integers(3, size=depth), rng.integers(3, size=depth)))
    space = get_space("shiftadd")
    for index, arch in enumerate(archs):
        variants[f"--arch {index + 1}"] = space.blocks(space.canonical(arch))
    return variants


def accuracy_and_energy(variants: dict, moe_fraction: float) -> dict[str, tuple[float, float]]:
    """(digits test accuracy after fine-tuning, estimated DeiT-Tiny energy in µJ) of each variant."""
    from hwlat.shiftadd._config import VIT_DIGITS
    from hwlat.shiftadd._energy import estimate_energy
    from hwlat.shiftadd._train import finetuned_accuracy, trained_base

    base = trained_base(VIT_DIGITS)
    return {name: (finetuned_accuracy(choices, base, split="test"),
                   estimate_energy(VIT_TINY, choices, moe_fraction).total_uj) for name, choices in variants.items()}


def model_table(args, console: Console) -> None:
    protocol = MeasurementProtocol(time_budget_s=args.budget)
    options = dict(threads=args.threads, moe_shift_fraction=args.moe_fraction, protocol=protocol)
    console.print(f"whole models: DeiT-Tiny shape, batch 1, {args.threads} threads, MoE fraction to shift "
                  f"{args.moe_fraction}, protocol budget {args.budget} s")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("latency table", total=11)
        table = block_latency_table(VIT_TINY, refresh=args.refresh_table,
                                    on_item=lambda name, stats: progress.advance(task), **options)
        variants = model_variants(args.arch)
        task = progress.add_task("whole models", total=len(variants) * args.repeats + 2)
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # each model in `repeats` processes, interleaved
            for name, choices in variants.items():
                runs[name].append(measure_vit_latency(VIT_TINY, choices, **options).median_ms)
                progress.advance(task)
        measured = {name: min(values) for name, values in runs.items()}
        others = ["original (softmax + dense)", *(f"--arch {index + 1}" for index in range(len(args.arch)))]
        progress.update(task, total=len(variants) * args.repeats + 2 * len(others))
        baselines = {}
        for name in others:
            for runtime in ("PyTorch eager", "ONNX Runtime"):
                values = []
                for _ in range(args.repeats):
                    onnx_dir = tempfile.mkdtemp(prefix="vit-onnx-") if runtime == "ONNX Runtime" else None
                    with SpawnedWorker(args.threads) as worker:
                        values.append(worker.call(time_torch_vit, args.threads, protocol.as_dict(), onnx_dir,
                                                  variants[name]))
                baselines[name, runtime] = min(values)
                progress.advance(task)
        progress.add_task("fine-tuning (accuracy)", total=None)
        quality = accuracy_and_energy(variants, args.moe_fraction)  # after the timings: torch threads stay out
    console.print("\nlatency table (ms): stem {:.3f}, head {:.3f}".format(table.stem_ms, table.head_ms))
    for key, ms in table.blocks_ms.items():
        console.print(f"  block {key:24s} {ms:8.3f}", highlight=False)
    original = measured["original (softmax + dense)"]
    console.print(f"\nTVM ms: smallest of {args.repeats} per-process medians (spread: largest / smallest)")
    console.print("accuracy: digits ViT with the same per-block choices, test split, after fine-tuning; energy: "
                  "DeiT-Tiny op-count ESTIMATE (see shiftadd_accuracy.py)")
    console.print(f"{'model':30s} {'TVM ms':>8s} {'spread':>7s} {'LUT ms':>8s} {'LUT err':>8s} {'vs original':>11s} "
                  f"{'test acc':>8s} {'µJ est.':>8s} {'saving':>7s}", highlight=False)
    for name, choices in variants.items():
        predicted = table.predict(choices)
        accuracy, energy = quality[name]
        console.print(f"{name:30s} {measured[name]:8.3f} {max(runs[name]) / measured[name]:7.2f} {predicted:8.3f} "
                      f"{(predicted - measured[name]) / measured[name]:+8.1%} {original / measured[name]:10.2f}x "
                      f"{accuracy:8.4f} {energy:8.1f} {1 - energy / quality['original (softmax + dense)'][1]:7.1%}",
                      highlight=False)
    for index, arch in enumerate(args.arch):
        console.print(f"--arch {index + 1}: {arch}", highlight=False)
    console.print(f"\nother runtimes (the same models as float ops), smallest of {args.repeats} processes; ratios: "
                  "runtime ms / TVM ms of the same model, and original in TVM / this")
    for (name, runtime), ms in baselines.items():
        console.print(f"  {name:30s} {runtime:14s} {ms:8.3f} ms  {ms / measured[name]:6.2f}  {original / ms:6.2f}x",
                      highlight=False)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(f"load average at the end: {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("kernels", "model", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.0, help="time budget of each measurement (s)")
    parser.add_argument("--tune", action="store_true", help="also MetaSchedule schedules (tuned once, then reused)")
    parser.add_argument("--records", default=str(hwlat_home() / "cache" / "shiftadd-tuning"))
    parser.add_argument("--trials", type=int, default=32, help="MetaSchedule trials per newly tuned kernel")
    parser.add_argument("--tune-limit", type=int, default=1,
                        help="most kernels tuned anew by one run (64 trials took 11 min here on a busy machine)")
    parser.add_argument("--moe-fraction", type=float, default=0.6)
    parser.add_argument("--repeats", type=int, default=3, help="processes per whole-model measurement")
    parser.add_argument("--refresh-table", action="store_true", help="measure the latency table again")
    parser.add_argument("--arch", action="append", default=[],
                        help="a `shiftadd` arch (e.g. one a search chose) to add to the model table; repeatable")
    args = parser.parse_args()
    console = Console(width=200, highlight=False)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
                  f"load average {load}")
    if args.part in ("kernels", "all"):
        kernel_table(args, console)
    if args.part in ("model", "all"):
        model_table(args, console)


if __name__ == "__main__":
    try:
        main()
    except HwlatError as exc:
        raise SystemExit(f"error: {exc}") from None
