"""Hybrid small-LM space: latency predictors for TTFT/TPOT, zero-cost proxies, and search against baselines.

Needs the data of benchmarks/hybrid_lm_collect.py in data/hybrid-lm (measurements.sqlite, losses.jsonl,
proxies.csv). Parts:

0. retest: agreement of the archs measured twice, on both clocks.
1. predictors: on each measured platform (TTFT and TPOT at batch 1 and 4), fit on the other platforms (the
   `hwlat` predictor uses them as its prior), adapt on `--samples` random archs, score on the held-out rest
   (Spearman, MAPE), over `--seeds` seeds.
2. proxies: Spearman of each zero-cost proxy with the trained validation loss (proxies.csv).
3. search: aging evolution and NSGA-II minimise trained validation loss (fixed budget, cached in losses.jsonl)
   and predicted TPOT and TTFT at batch 1 (`--search-predictor`, adapted on every measured arch); the fronts
   are then measured and the predictions on them scored; baselines (all-attention and all-Mamba stacks, deep-thin and wide-shallow hybrids) are
   trained and measured the same way. Prints loss / latency comparisons and writes Pareto reports to `--out`.

    python benchmarks/hybrid_lm.py [--part predictors|proxies|search|all] [--trials 16] [--out /tmp/hybrid-lm]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from hwlat.datasets import LatencyDataset
from hwlat.predictors import evaluate, make_predictor
from hwlat.profilers._llm import CLOCKS, METRICS, llm_platform, profile_llm
from hwlat.search import FunctionMetric, PredictedLatency, run_search
from hwlat.spaces import get_space
from hwlat.spaces._lm_train import TrainedLossCache
from hwlat.spaces.hybrid_lm import PROMPT
from hwlat.store import MeasurementStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hybrid_lm_collect import BATCHES, DATA, PROTOCOL, archs, baselines  # noqa: E402

#: predictors compared in part 1: label -> (make_predictor name, parameters)
PREDICTORS = {"hwlat onehot": ("hwlat", {}), "hwlat counts": ("hwlat", {"encoding": "counts"}),
              "lut onehot": ("lut", {}), "lut counts": ("lut", {"encoding": "counts"}),
              "gb onehot": ("gb", {}), "gb counts": ("gb", {"encoding": "counts"}),
              "flops": ("flops", {}), "params": ("params", {})}
#: sampled archs of the collected dataset (hybrid_lm_collect.py latency --archs)
ARCHS = 60
#: the latencies a search minimises: metric -> platform suffix, at batch 1 on one thread
SEARCHED = {"tpot": 1, "ttft": 1}


def dataset(clock: str) -> LatencyDataset:
    """The collected measurements on `clock` (not the fronts a search measured), one 'device' per platform."""
    frame = MeasurementStore(DATA / "measurements.sqlite").frame()
    wanted = {platform(m, b, clock) for m in METRICS for b in BATCHES}
    frame = frame[frame["platform"].isin(wanted) & frame["arch"].isin(archs(ARCHS))]
    return LatencyDataset.from_frame(frame, "hybrid-lm", device_key=("platform",))


def platform(metric: str, batch: int, clock: str) -> str:
    """Platform key of a stored serving latency (one thread, the space's prompt length)."""
    return llm_platform(metric, 1, batch, PROMPT, clock)


def predictors(data: LatencyDataset, samples: int, seeds: int) -> None:
    """Part 1."""
    print(f"archs measured: {len(data.archs)}; adapt on {samples}, test on the rest, {seeds} seeds\n")
    print(f"| platform | {' | '.join(PREDICTORS)} |\n|---|{'---|' * len(PREDICTORS)}")
    for target in data.devices:
        sources = [d for d in data.devices if d != target]
        cells = []
        for name, params in PREDICTORS.values():
            result = evaluate(make_predictor(name, **params), data, target, sources, samples=samples, seeds=seeds,
                              protocol="holdout")
            cells.append(f"ρ {result.spearman_mean:.3f} / MAPE {100 * np.mean(result.mape):.1f} %")
        print(f"| {target} | {' | '.join(cells)} |")


def retest() -> None:
    """Test-retest agreement of every platform's archs measured twice (tag "retest"), median and min statistics."""
    frame = MeasurementStore(DATA / "measurements.sqlite").frame()
    print("\n| platform | archs | statistic | retest Spearman ρ | median relative difference |\n|---|---|---|---|---|")
    for name in sorted(frame["platform"].unique()):
        rows = frame[frame["platform"] == name]
        again = rows[rows["tag"] == "retest"].set_index("arch")
        first = rows[rows["tag"] == ""].set_index("arch").loc[again.index]
        for statistic in ("median_ms", "min_ms") if len(again) else ():
            x, y = first[statistic], again[statistic]
            print(f"| {name} | {len(again)} | {statistic} | {spearmanr(x, y).statistic:.3f} "
                  f"| {100 * ((x - y).abs() / x).median():.1f} % |")


def proxies() -> None:
    """Part 2."""
    table = pd.read_csv(DATA / "proxies.csv")
    print(f"\n{len(table)} archs trained; Spearman ρ of each proxy with validation loss (lower loss = better):")
    for column in table.columns.drop(["arch", "val_loss"]):
        print(f"- {column}: ρ = {spearmanr(table[column], table['val_loss']).statistic:+.3f}")


def measured(archs: list[str], clock: str) -> pd.DataFrame:
    """True TTFT/TPOT at batch 1 of `archs` (measured now if the store lacks them), one row per arch."""
    store = MeasurementStore(DATA / "measurements.sqlite")
    profile_llm(archs, batch_sizes=(1,), cpus=[1], protocol=PROTOCOL, store=store, clock=clock)
    frame = store.frame(tag="")
    out = pd.DataFrame({"arch": archs})
    for metric, batch in SEARCHED.items():
        rows = frame[frame["platform"] == platform(metric, batch, clock)].drop_duplicates("arch").set_index("arch")
        out[f"true_{metric}_ms"] = rows.loc[archs, "median_ms"].to_numpy()
    return out


def search(data: LatencyDataset, label: str, trials: int, out: Path, clock: str) -> None:
    """Part 3."""
    loss = TrainedLossCache(DATA / "losses.jsonl")
    space = get_space("hybrid-lm")
    latencies = []
    for metric, batch in SEARCHED.items():
        target = platform(metric, batch, clock)
        name, params = PREDICTORS[label]
        predictor = make_predictor(name, **params).fit(data.subset([d for d in data.devices if d != target]))
        rows = np.flatnonzero(np.isfinite(data[target]))
        predictor.adapt([data.archs[i] for i in rows], data[target][rows])
        latencies.append(PredictedLatency(predictor, f"{metric}_ms", device=target))
        print(f"{metric}: {label} predictor adapted on {len(rows)} measured archs")
    val_loss = FunctionMetric("val_loss", loss, goal="min")
    fronts = {}
    for strategy in ("evolution", "nsga2"):
        result = run_search("hybrid-lm", [val_loss, *latencies], strategy=strategy, trials=trials, seed=0,
                            population_size=max(4, trials // 2))
        report = result.report(f"hybrid-lm {strategy}", {"trials": trials})
        report.write(out / f"front-{strategy}")
        front = result.front.reset_index(drop=True)
        fronts[strategy] = front.merge(measured(front["arch"].tolist(), clock), on="arch")
        print(f"\n{strategy}: {result.summary()}")
        print(fronts[strategy][["arch", "val_loss", "tpot_ms", "true_tpot_ms", "ttft_ms", "true_ttft_ms"]]
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for metric in SEARCHED:
            predicted, true = fronts[strategy][f"{metric}_ms"], fronts[strategy][f"true_{metric}_ms"]
            print(f"{metric} predicted on the front: MAPE {100 * ((predicted - true).abs() / true).mean():.1f} %, "
                  f"Spearman {spearmanr(predicted, true).statistic:.3f}")
    found = pd.concat(fronts.values()).drop_duplicates("arch")
    named = baselines()
    base = measured(list(named.values()), clock)
    base.insert(0, "name", list(named))
    base["val_loss"] = [loss(a) for a in base["arch"]]
    base["params"] = [space.params(a) for a in base["arch"]]
    compare(found, base)


def compare(found: pd.DataFrame, base: pd.DataFrame) -> None:
    """For each baseline: the fastest found arch at no worse loss, and the best found loss at no worse latency."""
    for metric in SEARCHED:
        column = f"true_{metric}_ms"
        print(f"\n| baseline | params | val loss | {metric.upper()} ms | found at <= loss: {metric.upper()} ratio "
              f"| found at <= {metric.upper()}: loss |\n|---|---|---|---|---|---|")
        for _, row in base.iterrows():
            better = found[found["val_loss"] <= row["val_loss"]]
            faster = found[found[column] <= row[column]]
            ratio = f"{better[column].min() / row[column]:.2f}" if len(better) else "none found"
            lower = f"{faster['val_loss'].min():.3f}" if len(faster) else "none found"
            print(f"| {row['name']} `{row['arch']}` | {row['params']:,} | {row['val_loss']:.3f} | {row[column]:.3f} "
                  f"| {ratio} | {lower} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("retest", "predictors", "proxies", "search", "all"), default="all")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("/tmp/hybrid-lm"))
    parser.add_argument("--clock", choices=CLOCKS, default="cpu", help="which stored timings to use")
    parser.add_argument("--search-predictor", choices=PREDICTORS, default="hwlat counts")
    args = parser.parse_args()
    data = dataset(args.clock)
    if args.part in ("retest", "all"):
        retest()
    if args.part in ("predictors", "all"):
        predictors(data, args.samples, args.seeds)
    if args.part in ("proxies", "all"):
        proxies()
    if args.part in ("search", "all"):
        args.out.mkdir(parents=True, exist_ok=True)
        search(data, args.search_predictor, args.trials, args.out, args.clock)


if __name__ == "__main__":
    main()
