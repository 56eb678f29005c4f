"""Collect the hybrid-lm data in data/hybrid-lm: TTFT/TPOT measurements and trained validation losses.

    python benchmarks/hybrid_lm_collect.py latency [--archs 60] [--cpus 1] [--clock cpu]  # -> measurements.sqlite/.csv
    python benchmarks/hybrid_lm_collect.py retest [--archs 20] [--cpus 1] [--clock cpu]   # first archs, tag "retest"
    python benchmarks/hybrid_lm_collect.py loss [--archs 24]                  # -> losses.jsonl, proxies.csv

Archs are `get_space("hybrid-lm").sample(n, seed=0)` followed by the baseline families of
benchmarks/hybrid_lm.py; reruns resume (stored records and finished trainings are skipped).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from hwlat.profilers import MeasurementProtocol
from hwlat.profilers._llm import CLOCKS, profile_llm
from hwlat.spaces import get_space
from hwlat.spaces._lm_train import TrainedLossCache, zero_cost_proxies
from hwlat.store import MeasurementStore

DATA = Path(__file__).resolve().parents[1] / "data" / "hybrid-lm"
#: the protocol of the stored measurements: short, since a TTFT at batch 4 takes up to ~0.1 s
PROTOCOL = MeasurementProtocol(warmup_runs=3, warmup_seconds=0.05, min_repeats=10, target_rel_ci=0.02,
                               time_budget_s=0.3)
BATCHES = (1, 4)


def baselines() -> dict[str, str]:
    """Named reference stacks: all-attention and all-SSM at several sizes, deep-thin and wide-shallow hybrids."""
    stacks = {}
    for width, heads in ((64, 2), (128, 4), (192, 4)):
        for depth in (2, 3):
            stacks[f"attn-{width}-{depth}"] = f"w{width}-h{heads}-f2:" + ",".join(["attn", "ffn"] * depth)
            stacks[f"mamba-{width}-{depth}"] = f"w{width}-h{heads}-f2:" + ",".join(["mamba", "ffn"] * depth)
    stacks["deep-thin"] = "w64-h2-f2:gdn,ffn,mamba,ffn,attn,ffn"
    stacks["wide-shallow"] = "w192-h4-f2:gdn,ffn"
    return stacks


def archs(n: int) -> list[str]:
    sampled = get_space("hybrid-lm").sample(n, seed=0)
    return sampled + [a for a in baselines().values() if a not in sampled]


def latency(n: int, cpus: list[int] | None, clock: str, tag: str = "") -> None:
    store = MeasurementStore(DATA / "measurements.sqlite")
    start = time.perf_counter()
    wanted = archs(n) if not tag else archs(n)[:n]
    batches = BATCHES if not tag else BATCHES[:1]
    count = 0

    def report(arch: str, batch: int, stats: dict) -> None:
        nonlocal count
        count += 1
        print(f"[{count}/{len(wanted) * len(batches)}] b{batch} {arch}: TTFT {stats['ttft']['median_ms']:.2f} ms, "
              f"TPOT {stats['tpot']['median_ms']:.3f} ms", flush=True)

    load = os.getloadavg()
    added = profile_llm(wanted, batch_sizes=batches, cpus=cpus, protocol=PROTOCOL, store=store, tag=tag,
                        clock=clock, on_item=report)
    store.export(DATA / "measurements.csv")
    print(f"added {added} records in {time.perf_counter() - start:.0f} s; load average before {load}, "
          f"after {os.getloadavg()}")


def loss(n: int) -> None:
    cache = TrainedLossCache(DATA / "losses.jsonl")
    rows = []
    for i, arch in enumerate(archs(n)[:n]):
        value = cache(arch)
        rows.append({"arch": arch, "val_loss": value, **zero_cost_proxies(arch)})
        print(f"[{i + 1}/{n}] {arch}: val loss {value:.3f} ({cache.rows[arch]['train_s']:.0f} s)", flush=True)
    pd.DataFrame(rows).to_csv(DATA / "proxies.csv", index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("latency", "retest", "loss"))
    parser.add_argument("--archs", type=int, default=None)
    parser.add_argument("--cpus", default="1", help="cores the timing process is pinned to ('' = unpinned)")
    parser.add_argument("--clock", choices=CLOCKS, default="cpu", help="wall clock, or the process's CPU time")
    args = parser.parse_args()
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    if args.part == "latency":
        latency(args.archs or 60, cpus, args.clock)
    elif args.part == "retest":
        latency(args.archs or 20, cpus, args.clock, tag="retest")
    else:
        loss(args.archs or 24)


if __name__ == "__main__":
    main()
