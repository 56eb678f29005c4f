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
4. surrogate: cross-validated Spearman / MAE of loss surrogates (hwlat's target-only predictors fitted on the
   trained losses instead of latencies) over every trained arch.
5. screened: a surrogate-screened search. Each of `--rounds` rounds fits the surrogate (ridge on the one-hot
   encoding) on every trained arch, runs aging evolution and NSGA-II for `--screen-trials` trials each on
   (predicted loss, predicted TPOT, predicted TTFT), and trains `--train` untrained archs spread over the union
   of the predicted fronts; the next round refits on them. The trained candidates are measured; their true
   front and the baselines are trained with two more seeds (other data order and init), and the front is
   compared with the baselines on 3-seed mean losses against the seed noise. Rounds are recorded in
   data/hybrid-lm/screened.jsonl and every training in losses.jsonl, so a rerun resumes.

    python benchmarks/hybrid_lm.py [--part predictors|proxies|search|surrogate|screened|all] [--trials 16]
        [--rounds 5 --screen-trials 1000 --train 12] [--out /tmp/hybrid-lm]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from hwlat.datasets import LatencyDataset
from hwlat.predictors import evaluate, make_predictor
from hwlat.profilers._llm import CLOCKS, METRICS, llm_platform, profile_llm
from hwlat.reports import Objective, ParetoReport, pareto_front
from hwlat.search import FunctionMetric, PredictedLatency, run_search
from hwlat.spaces import get_space
from hwlat.spaces._lm_train import Budget, TrainedLossCache
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
#: the trained-loss surrogate of the screened search: ridge on the one-hot encoding (hwlat's "lut" predictor)
SURROGATE = ("lut", {})
#: training seeds beyond seed 0 (other data order and init) that measure the noise of the trained loss
NOISE_SEEDS = (1, 2)
#: which screened candidates each round chose (resumable record of the screened search)
SCREENED = DATA / "screened.jsonl"
#: passes of the screened candidates' and baselines' remeasurement (one session, so their ratios compare)
PASSES = 3


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


def measured(archs: list[str], clock: str, tag: str = "") -> pd.DataFrame:
    """True TTFT/TPOT at batch 1 of `archs` (measured now if the store lacks them under `tag`), one row per arch."""
    store = MeasurementStore(DATA / "measurements.sqlite")
    profile_llm(archs, batch_sizes=(1,), cpus=[1], protocol=PROTOCOL, store=store, clock=clock, tag=tag)
    frame = store.frame(tag=tag)
    out = pd.DataFrame({"arch": archs})
    for metric, batch in SEARCHED.items():
        rows = frame[frame["platform"] == platform(metric, batch, clock)].drop_duplicates("arch").set_index("arch")
        out[f"true_{metric}_ms"] = rows.loc[archs, "median_ms"].to_numpy()
    return out


def remeasured(archs: list[str], clock: str, passes: int = PASSES) -> pd.DataFrame:
    """TTFT/TPOT at batch 1 of `archs` measured again in `passes` passes over all of them (tags ``screened-<i>``,
    stored, so a rerun resumes): per arch the median over the passes; prints how well the passes agree."""
    runs = [measured(archs, clock, f"screened-{i + 1}") for i in range(passes)]
    for metric in SEARCHED:
        values = np.stack([run[f"true_{metric}_ms"].to_numpy() for run in runs])
        spread = (values.max(axis=0) - values.min(axis=0)) / np.median(values, axis=0)
        print(f"{metric} of {len(archs)} archs over {passes} passes: median (max - min) / median "
              f"{100 * np.median(spread):.1f} %, Spearman first vs last pass "
              f"{spearmanr(values[0], values[-1]).statistic:.3f}")
    return pd.concat(runs).groupby("arch", sort=False).median().reset_index()


def predicted_latencies(data: LatencyDataset, label: str, clock: str) -> list[PredictedLatency]:
    """TPOT and TTFT at batch 1 predicted by `label`, fitted on the other platforms and adapted on every measured arch."""
    latencies = []
    for metric, batch in SEARCHED.items():
        target = platform(metric, batch, clock)
        name, params = PREDICTORS[label]
        predictor = make_predictor(name, **params).fit(data.subset([d for d in data.devices if d != target]))
        rows = np.flatnonzero(np.isfinite(data[target]))
        predictor.adapt([data.archs[i] for i in rows], data[target][rows])
        latencies.append(PredictedLatency(predictor, f"{metric}_ms", device=target))
        print(f"{metric}: {label} predictor adapted on {len(rows)} measured archs")
    return latencies


def search(data: LatencyDataset, label: str, trials: int, out: Path, clock: str) -> None:
    """Part 3."""
    loss = TrainedLossCache(DATA / "losses.jsonl")
    space = get_space("hybrid-lm")
    latencies = predicted_latencies(data, label, clock)
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


def trained_losses(cache: TrainedLossCache) -> tuple[list[str], np.ndarray]:
    """Every arch trained with `cache`'s budget and its validation loss."""
    archs = list(cache.rows)
    return archs, np.array([cache.rows[a]["val_loss"] for a in archs])


def loss_surrogate(data: LatencyDataset, archs: list[str], losses: np.ndarray):
    """The surrogate of the trained loss (`SURROGATE`) fitted on `archs` (a target-only predictor ignores `data`)."""
    name, params = SURROGATE
    return make_predictor(name, **params).fit(data).adapt(archs, losses)


def surrogate_quality(data: LatencyDataset, folds: int = 5, seeds: int = 5) -> None:
    """Part 4: cross-validated rank correlation and error of loss surrogates on the trained archs."""
    archs, losses = trained_losses(TrainedLossCache(DATA / "losses.jsonl"))
    print(f"\n{len(archs)} trained archs, {folds}-fold cross-validation over {seeds} shuffles:")
    for name, params in (SURROGATE, ("lut", {"encoding": "counts"}), ("gb", {}), ("gb", {"encoding": "counts"})):
        rhos, maes = [], []
        for seed in range(seeds):
            order = np.random.default_rng(seed).permutation(len(archs))
            predicted = np.empty(len(archs))
            for test in np.array_split(order, folds):
                train = np.setdiff1d(order, test)
                model = make_predictor(name, **params).fit(data).adapt([archs[i] for i in train], losses[train])
                predicted[test] = model.predict([archs[i] for i in test])
            rhos.append(spearmanr(predicted, losses).statistic)
            maes.append(np.abs(predicted - losses).mean())
        print(f"- {name} {params.get('encoding', 'onehot')}: Spearman {np.mean(rhos):.3f}, MAE {np.mean(maes):.3f} nats")
    print(f"(loss spread: std {losses.std():.3f}, range {losses.min():.3f}-{losses.max():.3f})")


def screened_search(data: LatencyDataset, label: str, clock: str, rounds: int, trials: int, per_round: int,
                    out: Path) -> pd.DataFrame:
    """Rounds of: fit the loss surrogate on every trained arch, run both strategies for `trials` surrogate-scored
    trials with predicted TPOT/TTFT, and train `per_round` untrained archs, spread by predicted loss over those
    of the union of the predicted fronts that no trained arch dominates (trained archs scored by their trained
    loss and predicted latencies). A round's choice is recorded in `SCREENED` before training, so a rerun resumes
    it. Returns the trained candidates with their predictions and losses."""
    cache = TrainedLossCache(DATA / "losses.jsonl")
    latencies = predicted_latencies(data, label, clock)
    done = [json.loads(line) for line in SCREENED.read_text().splitlines()] if SCREENED.exists() else []
    rows = []
    for r in range(rounds):
        if r == len(done):
            archs, losses = trained_losses(cache)
            surrogate = loss_surrogate(data, archs, losses)
            metric = FunctionMetric("pred_loss", lambda a: float(surrogate.predict([a])[0]), goal="min", costly=False)
            fronts = []
            for strategy in ("evolution", "nsga2"):
                result = run_search("hybrid-lm", [metric, *latencies], strategy=strategy, trials=trials, seed=r,
                                    population_size=50)
                result.report(f"hybrid-lm screened {strategy} round {r}", {"surrogate": SURROGATE[0]}).write(
                    out / f"screen-r{r}-{strategy}")
                print(f"round {r} {strategy}: {result.summary()}")
                fronts.append(result.front)
            front = pd.concat(fronts).drop_duplicates("arch")
            front = front[~front["arch"].isin(cache.rows)]
            untrained = len(front)
            known = pd.DataFrame({"arch": archs, "pred_loss": losses, **{m.name: m(archs) for m in latencies}})
            pool = pd.concat([front.assign(trained=False), known.assign(trained=True)], ignore_index=True)
            scored = [Objective(c) for c in ("pred_loss", *(m.name for m in latencies))]
            front = pool[pareto_front(pool, scored) & ~pool["trained"]].sort_values("pred_loss").reset_index(drop=True)
            picks = np.unique(np.linspace(0, len(front) - 1, min(per_round, len(front))).round().astype(int))
            done.append({"round": r, "trials": trials, "surrogate_trained_on": len(archs), "front": untrained,
                         "undominated": len(front),
                         "candidates": front.loc[picks, ["arch", "pred_loss", "tpot_ms", "ttft_ms"]].to_dict("records")})
            with SCREENED.open("a") as stream:
                stream.write(json.dumps(done[r]) + "\n")
        if not done[r]["candidates"]:
            print(f"round {r}: every arch on the predicted front is dominated by a trained arch; stopping")
            break
        chosen = pd.DataFrame(done[r]["candidates"])
        for i, arch in enumerate(chosen["arch"]):
            print(f"round {r} [{i + 1}/{len(chosen)}] {arch}: val loss {cache(arch):.3f}", flush=True)
        chosen["val_loss"] = [cache(a) for a in chosen["arch"]]
        chosen["round"] = r
        print(f"round {r}: surrogate on {done[r]['surrogate_trained_on']} trained archs, predicted fronts hold "
              f"{done[r]['front']} untrained archs ({done[r].get('undominated', 'no dominance filter in this round;')} "
              f"undominated by a trained arch), trained {len(chosen)}; on them predicted vs trained loss: "
              f"Spearman {spearmanr(chosen['pred_loss'], chosen['val_loss']).statistic:.3f}, "
              f"MAE {(chosen['pred_loss'] - chosen['val_loss']).abs().mean():.3f}, "
              f"best trained {chosen['val_loss'].min():.3f}")
        rows.append(chosen)
    return pd.concat(rows, ignore_index=True)


def seed_losses(archs: list[str]) -> pd.DataFrame:
    """Validation loss of `archs` at seed 0 and `NOISE_SEEDS` (trained if missing): one column per seed."""
    table = pd.DataFrame({"arch": archs})
    for seed in (0, *NOISE_SEEDS):
        cache = TrainedLossCache(DATA / "losses.jsonl", Budget(seed=seed))
        table[f"seed{seed}"] = [cache(a) for a in archs]
    return table


def screened(data: LatencyDataset, label: str, clock: str, rounds: int, trials: int, per_round: int,
             out: Path) -> None:
    """Part 5: the screened search's true front against the baselines, losses averaged over seeds."""
    print(f"load average at the start: {os.getloadavg()}")
    found = screened_search(data, label, clock, rounds, trials, per_round, out)
    named = baselines()
    base = pd.DataFrame({"name": list(named), "arch": list(named.values())})
    latency = remeasured([*found["arch"], *base["arch"]], clock)
    found, base = found.merge(latency, on="arch"), base.merge(latency, on="arch")
    for metric in SEARCHED:
        predicted, true = found[f"{metric}_ms"], found[f"true_{metric}_ms"]
        print(f"{metric} predicted on the {len(found)} trained candidates: MAPE "
              f"{100 * ((predicted - true).abs() / true).mean():.1f} %, Spearman {spearmanr(predicted, true).statistic:.3f}")
    base["params"] = [get_space("hybrid-lm").params(a) for a in base["arch"]]
    objectives = {m: [Objective("val_loss"), Objective(f"true_{m}_ms")] for m in SEARCHED}
    on_front = np.logical_or.reduce([pareto_front(found, o).to_numpy() for o in objectives.values()])
    front = found[on_front].reset_index(drop=True)
    seeds = seed_losses([*base["arch"], *front["arch"]])
    columns = [c for c in seeds.columns if c.startswith("seed")]
    spread = seeds[columns].to_numpy()
    sigma = float(np.sqrt(spread.var(axis=1, ddof=1).mean()))
    margin = 2 * sigma * np.sqrt(2 / len(columns))
    print(f"\nloss noise over seeds {columns} on {len(seeds)} archs: pooled std {sigma:.3f} nats; a difference of "
          f"two {len(columns)}-seed means beyond {margin:.3f} (2 standard errors) counts as real")
    print(f"seed-0 loss vs {len(columns)}-seed mean: Spearman "
          f"{spearmanr(spread[:, 0], spread.mean(axis=1)).statistic:.3f} over these archs")
    first, mean = (dict(zip(seeds["arch"], values)) for values in (spread[:, 0], spread.mean(axis=1)))
    for table in (front, base):
        table["loss_seed0"], table["loss_mean"] = table["arch"].map(first), table["arch"].map(mean)
    print(f"\nscreened front ({len(front)} of {len(found)} trained candidates, true latencies):")
    print(front[["round", "arch", "pred_loss", "loss_seed0", "loss_mean", "true_tpot_ms", "tpot_ms", "true_ttft_ms",
                 "ttft_ms"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    compare_noisy(front, base, margin)
    families(pd.concat([found.assign(loss_seed0=found["val_loss"]), base])[["arch", "loss_seed0", "true_tpot_ms"]])
    print(f"load average at the end: {os.getloadavg()}")
    points = pd.concat([front.assign(kind="screened"), base.assign(kind=base["name"])], ignore_index=True)
    ParetoReport("hybrid-lm: screened search front vs baselines (3-seed mean loss)",
                 points[["arch", "kind", "loss_mean", "true_tpot_ms", "true_ttft_ms"]],
                 [Objective("loss_mean"), Objective("true_tpot_ms"), Objective("true_ttft_ms")],
                 settings={"rounds": rounds, "trials": trials, "per_round": per_round, "clock": clock,
                           "seeds": columns}).write(out / "screened-vs-baselines")


def families(table: pd.DataFrame) -> None:
    """Depth x width grid over `table` (arch, loss_seed0, true_tpot_ms): the lowest loss per cell and that arch's
    TPOT, so deep-thin and wide-shallow stacks can be read off at equal loss or equal latency."""
    space = get_space("hybrid-lm")
    table = table.rename(columns={"loss_seed0": "val_loss", "true_tpot_ms": "tpot"})
    table["depth"] = [len(space.parts(a)[3]) for a in table["arch"]]
    table["width"] = [space.parts(a)[0] for a in table["arch"]]
    best = table.loc[table.groupby(["depth", "width"])["val_loss"].idxmin()]
    widths = sorted(best["width"].unique())
    print(f"\nlowest seed-0 loss (TPOT ms) per depth and width over the {len(table)} archs measured above:\n"
          f"| blocks | {' | '.join(f'w{w}' for w in widths)} |\n|---|{'---|' * len(widths)}")
    for depth, rows in best.groupby("depth"):
        cells = {w: f"{r.val_loss:.3f} ({r.tpot:.2f})" for w, r in zip(rows["width"], rows.itertuples())}
        print(f"| {depth} | {' | '.join(cells.get(w, '-') for w in widths)} |")


def compare_noisy(front: pd.DataFrame, base: pd.DataFrame, margin: float) -> None:
    """Per baseline and latency: the fastest front arch at no worse mean loss, and at a loss no worse beyond the
    noise `margin` (latency ratios), and the lowest mean loss at no worse latency (difference, beyond `margin`?)."""

    def fastest(rows: pd.DataFrame, column: str, reference: float) -> str:
        if rows.empty:
            return "none"
        best = rows.loc[rows[column].idxmin()]
        return f"{best[column] / reference:.2f} (`{best['arch']}`, {best['loss_mean']:.3f})"

    for metric in SEARCHED:
        column, title = f"true_{metric}_ms", metric.upper()
        print(f"\n| baseline | params | loss (mean) | {title} ms | {title} ratio at <= loss | {title} ratio at loss "
              f"within noise | loss at <= {title} (difference) |\n|---|---|---|---|---|---|---|")
        for _, row in base.iterrows():
            ratio = fastest(front[front["loss_mean"] <= row["loss_mean"]], column, row[column])
            tie = fastest(front[front["loss_mean"] <= row["loss_mean"] + margin], column, row[column])
            faster = front[front[column] <= row[column]]
            if len(faster):
                delta = faster["loss_mean"].min() - row["loss_mean"]
                verdict = "lower" if delta < -margin else "higher" if delta > margin else "within noise"
                lower = f"{faster['loss_mean'].min():.3f} ({delta:+.3f}, {verdict})"
            else:
                lower = "none"
            print(f"| {row['name']} `{row['arch']}` | {row['params']:,} | {row['loss_mean']:.3f} | {row[column]:.3f} "
                  f"| {ratio} | {tie} | {lower} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("retest", "predictors", "proxies", "search", "surrogate", "screened", "all"),
                        default="all")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="screened search: surrogate refits")
    parser.add_argument("--screen-trials", type=int, default=1000, help="screened search: trials per strategy and round")
    parser.add_argument("--train", type=int, default=12, help="screened search: archs trained per round")
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
    if args.part in ("surrogate", "all"):
        surrogate_quality(data)
    if args.part in ("screened", "all"):
        args.out.mkdir(parents=True, exist_ok=True)
        screened(data, args.search_predictor, args.clock, args.rounds, args.screen_trials, args.train, args.out)


if __name__ == "__main__":
    main()
