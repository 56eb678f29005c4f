"""Latency predictors under HELP's protocol on the shared HELP data, beside HELP's published Spearman rho.

Per meta-test device present in the data (per meta-valid device with --targets meta_valid, or when no meta-test
device of the space is present, as for OFA): rho (mean ± std over seeds) of each predictor at the strict budget
(the 10 reference latencies only, "s0") and with 5/10/20 random samples beside them, for predictors that can
choose their samples also with the same budgets chosen by active selection ("a5".., deterministic: one run), a
linear ceiling (ridge on the one-hot encoding fitted on every arch of the target outside its test pool), at 10
samples the MAPE and the share within ±10 %, the share of test latencies within the predicted mean ± 2 std at
each random budget (where the predictor gives a std), the slowest adaptation and batched predictions per second.
Optionally, seeded random device partitions (sources drawn at random, every other device a target; 10 random
and, where the predictor can choose, 10 actively chosen samples), and leave one platform out on the project's
own table.
Usage: python benchmarks/predictors_help.py [--data DIR] [--spaces nb201,fbnet,ofa]
       [--predictors hwlat,help,lut,gb,mlp,flops] [--samples 0,5,10,20] [--seeds 5] [--partitions 0]
       [--partition-predictors hwlat] [--targets meta_test|meta_valid] [--project data/nb201-cpu/measurements.csv]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV

from hwlat.datasets import LatencyDataset, load_help
from hwlat.predictors import (HELP_PUBLISHED, HELP_SPLITS, evaluate, make_predictor, pools, predictor_kinds,
                              score, source_view)
from hwlat.spaces import get_space


def default_data() -> Path:
    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("HWLAT_SHARED", root.parent / "shared")) / "data" / "help"


def ceiling(dataset, target: str) -> float:
    """Rho of a ridge on the one-hot encoding fitted on every arch of the target outside its test pool."""
    _, test = pools(dataset, target)
    x = get_space(dataset.space).encode(dataset.archs)
    train = np.setdiff1d(np.arange(len(dataset.archs)), np.arange(test.min(), test.max() + 1))
    latency = dataset[target]
    model = RidgeCV(alphas=np.logspace(-3, 2, 6)).fit(x[train], latency[train])
    return float(spearmanr(model.predict(x[test]), latency[test]).statistic)


def throughput(predictor, archs: list[str], batch: int) -> float:
    """Predictions per second on one batch of `batch` arch strings, best of 3 calls (as `timeit` advises)."""
    sample = (archs * (batch // len(archs) + 1))[:batch]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        predictor.predict(sample)
        times.append(time.perf_counter() - start)
    return batch / min(times)


def run_space(dataset, names: list[str], budgets: list[int], seeds: int, group: str = "meta_test") -> None:
    """Every predictor on the HELP split's `group` devices present in the data (meta_test, or meta_valid when
    asked or when no meta-test device is present), fitted on the meta-train devices."""
    split = HELP_SPLITS[dataset.space]
    sources = [d for d in split["meta_train"] if d in dataset.latency]
    targets = [d for d in split[group] if d in dataset.latency]
    absent = [d for d in split[group] if d not in dataset.latency]
    print(f"\n== {dataset.space}: sources {', '.join(sources)}")
    print(f"   {group.replace('_', '-')} devices in the data: {', '.join(targets) or '-'}; absent: "
          f"{', '.join(absent) or '-'}")
    if not targets and group == "meta_test":
        group, targets = "meta_valid", [d for d in split["meta_valid"] if d in dataset.latency]
        print(f"   no meta-test device present: scoring the meta-valid devices instead ({', '.join(targets) or '-'})")
    if not targets:
        return
    published = HELP_PUBLISHED.get(dataset.space, {}) if group == "meta_test" else {}
    means: dict[tuple[str, int], list[float]] = {}
    for name in names:
        start = time.perf_counter()
        predictor = make_predictor(name).fit(source_view(dataset, sources))
        fit_s = time.perf_counter() - start
        print(f"-- {name} (fit on sources {fit_s:.1f} s)")
        chosen = [b for b in budgets if b > 0] if predictor.can_select else []
        header = (f"   {'device':15s} {'HELP pub.':>9s} " + " ".join(f"{f's{b}':>15s}" for b in budgets)
                  + "".join(f" {f'a{b}':>7s}" for b in chosen))
        print(header + f" {'ceiling':>8s} {'MAPE@10':>8s} {'±10%@10':>8s} {'±2σ % by budget':>16s} "
                       f"{'adapt max':>10s} {'pred/s':>10s}")
        for target in targets:
            cells, extra, coverage, adapt = [], ([], []), [], 0.0
            for budget in budgets:
                result = score(predictor, dataset, target, samples=budget, seeds=seeds)
                cells.append(f"{result.spearman_mean:.4f}±{result.spearman_std:.4f}")
                means.setdefault((name, f"s{budget}"), []).append(result.spearman_mean)
                adapt = max(adapt, *result.adapt_s)
                if result.within2std:
                    coverage.append(f"{100 * np.mean(result.within2std):.0f}")
                if budget == 10:
                    extra = (np.mean(result.mape), np.mean(result.within10))
            for budget in chosen:  # deterministic given the reference latencies: one run
                result = score(predictor, dataset, target, samples=budget, seeds=1, select="active")
                cells.append(f"{result.spearman_mean:.4f}")
                means.setdefault((name, f"a{budget}"), []).append(result.spearman_mean)
            # FLOPs are counted once per arch and cached, so a rate over the scored archs would mislead
            rate = "-" if name == "flops" else f"{throughput(predictor, list(dataset.archs[:1900]), 100_000):.0f}"
            pub = published.get(target)
            mape = " ".join(f"{100 * v:7.1f}%" if len(np.atleast_1d(v)) else f"{'-':>8s}" for v in extra)
            print(f"   {target:15s} {pub if pub else '-':>9} " + " ".join(f"{c:>15s}" for c in cells[:len(budgets)])
                  + "".join(f" {c:>7s}" for c in cells[len(budgets):])
                  + f" {ceiling(dataset, target):8.4f} {mape} {'/'.join(coverage) or '-':>16s} {adapt:9.3f}s "
                    f"{rate:>10s}")
        help_mean = np.mean([published[t] for t in targets if t in published]) if published else float("nan")
        print(f"   {'mean':15s} {help_mean:9.4f} "
              + " ".join(f"{np.mean(means[(name, f's{b}')]):>15.4f}" for b in budgets)
              + "".join(f" {np.mean(means[(name, f'a{b}')]):>7.4f}" for b in chosen)
              + "   (HELP pub. mean over the devices present)")


def distinct_partitions(devices: list[str], count: int, sources: int = 9) -> list[tuple[int, list[str], list[str]]]:
    """(seed, sources, targets) of the first `count` seeds whose random partitions differ (few devices, e.g. OFA's
    11, repeat partitions: seeds 0 and 2 draw the same one there)."""
    found, seen, seed = [], set(), 0
    while len(found) < count and seed < 1000 * count:
        drawn = list(np.random.default_rng(seed).permutation(devices))
        if frozenset(drawn[:sources]) not in seen:
            seen.add(frozenset(drawn[:sources]))
            found.append((seed, drawn[:sources], drawn[sources:]))
        seed += 1
    return found


def run_partitions(dataset, partitions: int, seeds: int, names: list[str]) -> None:
    """Predictors on seeded random device partitions: 9 random sources, every other device a target."""
    print(f"\n== {dataset.space}: {partitions} random device partitions (9 sources, the rest targets), 10 samples")
    for partition, sources, targets in distinct_partitions(dataset.devices, partitions):
        for name in names:
            predictor = make_predictor(name).fit(source_view(dataset, sources))
            results = [score(predictor, dataset, t, samples=10, seeds=seeds) for t in targets]
            rhos = [r.spearman_mean for r in results]
            worst = targets[int(np.argmin(rhos))]
            line = (f"   partition {partition} {name:6s}: mean rho {np.mean(rhos):.4f} over {len(targets)} targets, "
                    f"min {min(rhos):.4f} ({worst})")
            if predictor.provides_std:
                line += f"; ±2σ coverage {100 * np.mean([np.mean(r.within2std) for r in results]):.0f} %"
            if predictor.can_select:
                active = [score(predictor, dataset, t, samples=10, seeds=1, select="active").spearman_mean
                          for t in targets]
                line += f"; active selection: mean rho {np.mean(active):.4f}, min {min(active):.4f}"
            print(line)


def run_lopo(help_data, table: Path, seeds: int) -> None:
    """Leave one platform out on the project's own nb201 table: 10 random target samples, the rest scored."""
    import pandas as pd

    frame = pd.read_csv(table)
    own = LatencyDataset.from_frame(frame, "nb201")
    retest = LatencyDataset.from_frame(frame, "nb201", tag="retest")
    merged = help_data.merge(own)
    sources_help = [d for d in HELP_SPLITS["nb201"]["meta_train"] if d in help_data.latency]
    print(f"\n== leave one platform out on {table} (holdout protocol, 10 samples, {seeds} seeds)")
    print(f"   {'target':55s} {'archs':>5s} {'retest rho':>10s} {'other platforms':>16s} {'+ HELP sources':>16s}")
    for target in own.devices:
        others = [d for d in own.devices if d != target]
        cells = []
        for data, sources in ((own, others), (merged, others + sources_help)):
            result = evaluate(make_predictor("hwlat"), data, target, sources, samples=10, seeds=seeds,
                              protocol="holdout")
            cells.append(f"{result.spearman_mean:.4f}±{result.spearman_std:.4f}")
        measured = int(np.isfinite(own[target]).sum())
        print(f"   {target:55s} {measured:5d} {retest_rho(own, retest, target):>10s} {cells[0]:>16s} {cells[1]:>16s}")


def retest_rho(own, retest, target: str) -> str:
    """Spearman rho between first and repeated measurements of the same archs: the target's noise ceiling."""
    if target not in retest.latency:
        return "-"
    position = {arch: i for i, arch in enumerate(own.archs)}
    pairs = np.array([(position[a], j) for j, a in enumerate(retest.archs) if a in position]).reshape(-1, 2)
    first, again = own[target][pairs[:, 0]], retest[target][pairs[:, 1]]
    both = np.isfinite(first) & np.isfinite(again)
    return f"{spearmanr(first[both], again[both]).statistic:.4f}" if both.sum() > 2 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--spaces", default="nb201,fbnet")
    parser.add_argument("--predictors", default="hwlat,help,lut,gb,mlp,flops")
    parser.add_argument("--samples", default="0,5,10,20")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=0)
    parser.add_argument("--partition-predictors", default="hwlat")
    parser.add_argument("--targets", choices=("meta_test", "meta_valid"), default="meta_test",
                        help="HELP device group scored as targets (meta_valid: for development; spaces without "
                        "any meta-test device in the data fall back to it).")
    parser.add_argument("--project", type=Path, help="The project's measurement table (CSV) for leave one "
                        "platform out, e.g. data/nb201-cpu/measurements.csv.")
    args = parser.parse_args()
    names = args.predictors.split(",")
    unknown = set(names + args.partition_predictors.split(",")) - set(predictor_kinds())
    if unknown:
        parser.error(f"unknown predictors {sorted(unknown)} (known: {', '.join(predictor_kinds())})")
    budgets = [int(b) for b in args.samples.split(",")]
    for space in args.spaces.split(","):
        dataset = load_help(args.data, space)
        run_space(dataset, names, budgets, args.seeds, args.targets)
        if args.partitions:
            run_partitions(dataset, args.partitions, args.seeds, args.partition_predictors.split(","))
        if args.project and space == "nb201":
            run_lopo(dataset, args.project, args.seeds)


if __name__ == "__main__":
    main()
