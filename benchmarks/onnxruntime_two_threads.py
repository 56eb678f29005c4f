"""Two-thread ONNX Runtime timings on this machine: does pinning the threads make them repeatable?

Measures the first N retest cells of the shipped dataset twice in one process (two passes, a fresh
session per measurement) with `intra_op_num_threads=2`, unpinned or with the caller on the first allowed
core and ONNX Runtime's pool thread on the second, and prints the Spearman rho between the passes and the
spread of the per-cell ratio of pass 2 to pass 1.
Usage: python benchmarks/onnxruntime_two_threads.py [--archs 40] {unpinned,pinned}
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from scipy.stats import spearmanr

from hwlat.profilers import MeasurementProtocol, Workload, measure
from hwlat.profilers._protocol import perf_counter_timer

RETEST = Path(__file__).resolve().parents[1] / "data" / "nb201-cpu" / "retest_archs.txt"


def two_thread_timer(workload: Workload, pool_core: int | None):
    """A timer over a 2-thread session; `pool_core` (0-based) pins ONNX Runtime's pool thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if pool_core is not None:
        options.add_session_config_entry("session.intra_op_thread_affinities", str(pool_core + 1))  # 1-based
    session = ort.InferenceSession(str(workload.onnx_file()), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: workload.example_input()}
    outputs = [session.get_outputs()[0].name]
    return perf_counter_timer(lambda: session.run(outputs, feed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=40)
    parser.add_argument("mode", choices=("unpinned", "pinned"))
    args = parser.parse_args()
    pool_core = None
    if args.mode == "pinned":
        first, second = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, {first})
        pool_core = second
    archs = RETEST.read_text().split()[: args.archs]
    passes = [[measure(two_thread_timer(Workload("nb201", arch), pool_core), MeasurementProtocol()).median_ms
               for arch in archs] for _ in range(2)]
    first_pass, second_pass = np.array(passes[0]), np.array(passes[1])
    ratio = second_pass / first_pass
    print(f"{args.mode}: {len(archs)} cells, rho between passes {spearmanr(first_pass, second_pass).statistic:.4f}, "
          f"pass2/pass1 ratio p5 {np.percentile(ratio, 5):.3f} median {np.median(ratio):.3f} "
          f"p95 {np.percentile(ratio, 95):.3f}")


if __name__ == "__main__":
    main()
