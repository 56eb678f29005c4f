"""Latency-constrained NAS on NAS-Bench-201 against exhaustive truth (HELP + MetaD2A's settings), and Pareto quality.

Part 1, per HELP meta-test device present and each published constraint: adapt hwlat's predictor (fitted on HELP's
meta-train devices) with the target's 10 reference latencies plus 10 random training-pool ones, search CIFAR-100
accuracy under predicted latency <= budget with a 300-query budget, then look up the true latency of the best
candidates in order (each lookup counts as one more target measurement) and keep the best one truly within budget.
Reported: our accuracy, the exhaustive optimum from the same table, gap, true latency of the pick, violations,
accuracy queries, target measurements, wall time; means over seeds.

Part 2: hypervolume of each strategy's evaluated set (accuracy vs true latency, searched on the true latency) over
the true front's, reference point = true front's nadir + 10 % of its range, 300 trials.

    HWLAT_SHARED=../shared python benchmarks/search_nb201.py [--seeds 5] [--part 1|2|all]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import moocore
import numpy as np

from hwlat.datasets import load_dataset
from hwlat.predictors import HELP_SPLITS, make_predictor, target_samples
from hwlat.search import STRATEGIES, Constraint, LatencyLookup, PredictedLatency, nats_bench_accuracy, run_search

#: HELP + MetaD2A's published constraints (ms) and their picks' (accuracy, measured latency) on CIFAR-100
PUBLISHED = {
    "titan_rtx_256": {18: (69.7, 17.8), 21: (71.5, 18.9), 25: (71.8, 24.2)},
    "gold_6226": {8: (67.3, 8.0), 11: (70.2, 10.7), 14: (72.1, 14.3)},
    "eyeriss": {5: (71.5, 3.9), 7: (71.8, 5.1), 9: (73.5, 9.1)},
    "fpga": {4: (70.2, 3.8), 5: (71.8, 4.7), 6: (73.5, 7.4)},
}
TRIALS = 300
CHECKS = 10


def _shared() -> Path:
    return Path(os.environ.get("HWLAT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"


def constrained(dataset, accuracy, seeds: int, slack: float, oracle: bool) -> None:
    print(f"| device | budget (ms) | HELP+MetaD2A acc (lat) | optimum | ours (mean ± std) | gap | true lat of pick "
          f"| violations | no pick | queries | target measurements | wall s |\n|{'---|' * 12}")
    archs = list(dataset.archs)
    table = accuracy(archs)
    sources = [d for d in HELP_SPLITS["nb201"]["meta_train"] if d in dataset.latency]
    predictor = make_predictor("hwlat").fit(dataset.subset(sources))
    for device, budgets in PUBLISHED.items():
        if device not in dataset.latency:
            print(f"| {device} | absent from the shared data |")
            continue
        truth = LatencyLookup(dataset, device)
        for budget, (their_acc, their_lat) in budgets.items():
            optimum = table[dataset[device] <= budget].max()
            found, latency, violations, missed, queries, measured, wall = [], [], 0, 0, [], [], []
            for seed in range(seeds):
                start = time.perf_counter()
                rows = target_samples(dataset, device, 10, seed)
                predictor.adapt([archs[i] for i in rows], dataset[device][rows])
                predicted = truth if oracle else PredictedLatency(predictor, device=device)
                result = run_search("nb201", [accuracy], constraints=[Constraint(predicted, budget, slack)],
                                    trials=TRIALS, seed=seed)
                pick, checks = result.verified_best(truth, CHECKS)
                wall.append(time.perf_counter() - start)
                queries.append(result.queries)
                measured.append(len(rows) + checks)
                if pick is None:  # none of the checked candidates is truly within budget
                    missed += 1
                    continue
                found.append(pick[accuracy.name])
                latency.append(pick["true_latency_ms"])
                violations += int(pick["true_latency_ms"] > budget)
            print(f"| {device} | {budget} | {their_acc} ({their_lat}) | {optimum:.2f} | "
                  f"{np.mean(found):.2f} ± {np.std(found):.2f} | {optimum - np.mean(found):.2f} | "
                  f"{np.mean(latency):.2f} (max {np.max(latency):.2f}) | {violations}/{seeds} | {missed}/{seeds} | "
                  f"{np.mean(queries):.0f} | {np.mean(measured):.1f} | {np.median(wall):.1f} |", flush=True)


def pareto_quality(dataset, accuracy, seeds: int, device: str) -> None:
    truth = LatencyLookup(dataset, device)
    points = np.c_[truth(list(dataset.archs)), -accuracy(list(dataset.archs))]
    front = points[moocore.is_nondominated(points)]
    reference = front.max(axis=0) + 0.1 * (front.max(axis=0) - front.min(axis=0))
    best = moocore.hypervolume(front, ref=reference)
    print(f"\n{device}, {accuracy.name}: true front {len(front)} points, reference {np.round(reference, 3).tolist()}")
    print(f"| strategy | HV ratio (mean ± std, {seeds} seeds) | min | distinct archs evaluated | wall s |\n|---|---|---|---|---|")
    for strategy in STRATEGIES:
        ratios, queries, wall = [], [], []
        for seed in range(seeds):
            start = time.perf_counter()
            result = run_search("nb201", [accuracy, truth], strategy=strategy, trials=TRIALS, seed=seed)
            wall.append(time.perf_counter() - start)
            found = result.evaluated
            ratios.append(moocore.hypervolume(np.c_[found[truth.name], -found[accuracy.name]], ref=reference) / best)
            queries.append(result.queries)
        print(f"| {strategy} | {np.mean(ratios):.4f} ± {np.std(ratios):.4f} | {np.min(ratios):.4f} | "
              f"{np.mean(queries):.0f} | {np.median(wall):.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--slack", type=float, default=0.05, help="search under predicted latency <= budget x "
                        "(1 + slack); the true-latency checks then keep only picks within the budget")
    parser.add_argument("--oracle", action="store_true", help="part 1 with the true latency as the constrained "
                        "metric (no predictor): separates search misses from prediction misses")
    parser.add_argument("--part", choices=("1", "2", "all"), default="all")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dataset = load_dataset(_shared() / "help" / "nasbench201", "nb201")
    table = _shared() / "nats-bench" / "nats_bench.csv"
    if args.part in ("1", "all"):
        constrained(dataset, nats_bench_accuracy("cifar100", table), args.seeds, 0.0 if args.oracle else args.slack,
                    args.oracle)
    if args.part in ("2", "all"):
        pareto_quality(dataset, nats_bench_accuracy("cifar10", table), args.seeds, "fpga")
        for device in PUBLISHED:
            if device in dataset.latency:
                pareto_quality(dataset, nats_bench_accuracy("cifar100", table), args.seeds, device)


if __name__ == "__main__":
    main()
