"""Profiler overhead: median from `hwlat`'s protocol vs a bare perf_counter_ns loop on the same session.

Both time the same ONNX Runtime session in one process, round by round, alternating which goes first so
drift and warm-up effects hit both alike.
Usage: python benchmarks/profiler_overhead.py [--archs 5] [--rounds 6] [--threads 1] [--calls 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hwlat.profilers import MeasurementProtocol, Workload, measure
from hwlat.profilers.runtimes import OnnxRuntime
from hwlat.spaces import get_space


def bare_median_ms(timer, calls: int) -> float:
    """The simplest honest timing: warm up, then time each call and take the median."""
    for _ in range(10):
        timer(1)
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        timer(1)
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=50, help="timed calls of the bare loop")
    args = parser.parse_args()

    protocol = MeasurementProtocol()
    ratios = []
    for arch in get_space("nb201").sample(args.archs, seed=1):
        timer = OnnxRuntime(threads=args.threads).prepare(Workload("nb201", arch))
        arch_ratios = []
        for round_number in range(args.rounds):
            # alternate which goes first, so drift and warm-state effects cancel across rounds
            if round_number % 2:
                bare = bare_median_ms(timer, calls=args.calls)
                stats = measure(timer, protocol)
            else:
                stats = measure(timer, protocol)
                bare = bare_median_ms(timer, calls=args.calls)
            arch_ratios.append(stats.median_ms / bare)
        ratios.extend(arch_ratios)
        print(f"{arch}  protocol/bare median ratio {np.median(arch_ratios):.4f} (rounds {len(arch_ratios)})")
    overhead = np.median(ratios) - 1
    print(f"overall: median ratio {np.median(ratios):.4f} -> overhead {overhead * 100:+.2f} % "
          f"(IQR of ratios {np.percentile(ratios, 25):.4f}-{np.percentile(ratios, 75):.4f}, n={len(ratios)})")


if __name__ == "__main__":
    main()
