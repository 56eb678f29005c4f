"""Interference models on a co-location dataset: MAE % of predicted slowdowns on held-out workloads and targets.

Grouped cross-validation: leave-workload-out (a test fold's co-runner mixes never appear in training) and
leave-target-out (its target models never appear in training), disturbed scenarios excluded. Per model and split:
MAE % of the median slowdown (mean |predicted - measured| / measured * 100) averaged over folds and per fold,
the same for the p90 and p99 slowdowns, the relative improvement over gradient boosting (1 - MAE / MAE_gb), and
training time (sum over folds, seconds; torch on `--threads` threads). The issue's goals are printed beside:
MAE <= 5 % and >= 28 % better than gradient boosting.
`--models` also takes `gb-l1` (gradient boosting with the transformer's L1 loss), `gb-tuned` and
`transformer-tuned` (nested CV: each outer training fold picks its settings from a small grid by inner grouped
3-fold CV on its own scenarios; the transformer's search uses 2 members) and ablations of the transformer:
`tf-1member`, `tf-nocrop`, `tf-temporal`, `tf-metric`, `tf-descriptors` (no metric window at all), `tf-l1`
(L1 on log-slowdown instead of the relative error), `tf-base` (L1, no extra descriptors: the transformer as
first benchmarked), and `gb-base`, `gb-l1-base`, `gb-l1-load`, `gb-l1-threads`, `gb-relative` (descriptor groups and
losses of gradient boosting, see hwlat.interference.EXTRAS), and `gb-place`, `gb-l1-place`, `tf-place` (with the
co-runners' placement relative to the target), and `gb-slice`, `gb-l1-slice`, `tf-slice` (with the scheduler
time-slice descriptors: the target's isolated latency against the slice and the latency quantiles of an inference
preempted by CPU-bound co-runners on its core); `slice` is that mixture alone (nothing learnt) and
`gb-over-slice`, `gb-l1-over-slice` boost the correction to it (`base="slice"`); `tf-over-slice`, `tf-l1-over-slice`
are the transformer learning that correction (relative / L1 loss, load+threads+slice); `gb-l1-slice-press`,
`gb-l1-over-slice-press`, `tf-slice-press`, `tf-over-slice-press` add the workloads' measured pressure (EXTRAS
"pressure", from the dataset's pressure.csv written by `hwlat interference pressure`); `gb-l1-over-slice-refill`,
`tf-slice-refill`, `tf-over-slice-refill` add the refill probe (EXTRAS "refill"); `contended-slice` is the
mixture at the target's latency under the measured pressure (hwlat.interference.ContendedSliceInterference: a few
parameters fitted, `contended-slice-refill` with the refill, `contended-slice-mem` with the memory probes only) and
`gb-l1-over-contended` boosts the correction to it.
`--statistic mean` makes the mean slowdown (mean co-located latency over the isolated median; what throughput
follows, without the median's knife edge) the headline of the tables, the goals and the summary instead of the median.
Each split also prints the MAE %
of the scenarios with and without a co-runner thread on the target's cores (pinned datasets: where `pinned_cpus` puts
them), and whether each model meets the goals.
Several fold assignments: `--seeds 0,1,2` runs every model with each seed (the seed also seeds the models) and ends
with a summary per split and model: the MAE % of the median slowdown per seed and its mean over seeds, each with the
improvement over gb, and whether the model is >= 28 % better than gb on every seed of both splits. The seeds can run
in separate invocations (`--json` each), and `--summarize a.json,b.json,...` prints the same summary from their files
without training.
Several recordings of one machine: `--data` repeated cross-validates on their union (groups are still workloads or
targets; the noise ceiling pools their retest files).
Another recording: `--test-data DIR` adds the split "dataset": each model is fitted on every scenario of `--data` and
scored on every scenario of DIR (e.g. recorded on another day or machine); `--splits dataset` runs it alone.
`--extra-train DIR` (repeatable) adds another recording to every training fold of the held-out splits, less its
scenarios of the fold's held-out workloads or targets; the test folds stay within `--data`.
Noise ceiling: when the data directory holds `retest.csv` (benchmarks/interference_retest.py), two rows give the
error of predicting each re-recorded scenario by its second recording ("noise: retest") and that / sqrt 2, the
expected error of a perfect predictor of the mean slowdown when both recordings err independently ("noise: ideal");
only re-recordings with the dataset's placement and phase length count.
Usage: python benchmarks/interference_models.py [--data data/interference-cpu ...] [--folds 5]
       [--seed 0 | --seeds 0,1,2] [--models none,linear,gb,transformer] [--splits workload,target] [--members 5]
       [--threads 1] [--json FILE] [--statistic median|mean]
       [--test-data DIR | --extra-train DIR]
       python benchmarks/interference_models.py --summarize s0.json,s1.json,s2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from hwlat.interference import TARGETS, InterferenceData, cross_validate, evaluate_on, make_model, mae_percent
from hwlat.profilers import load_colocation_dataset

ROOT = Path(__file__).resolve().parents[1]
#: nested-CV candidates (each outer training fold picks one by inner grouped CV; its test fold is never seen)
TRANSFORMER_GRID = [{"d_model": 16}, {"d_model": 32}, {"d_model": 32, "dropout": 0.3, "weight_decay": 0.1},
                    {"d_model": 32, "crop": 1.0}]
GB_GRID = [{"max_depth": d, "n_estimators": n, "learning_rate": r}
           for d in (2, 3) for n in (100, 300) for r in (0.03, 0.1)]
#: label -> (kind, settings, nested-CV grid); `--models` picks labels
VARIANTS = {
    "none": ("none", {}, []), "linear": ("linear", {}, []), "gb": ("gb", {}, []),
    "transformer": ("transformer", {}, []),
    "gb-l1": ("gb", {"loss": "absolute_error"}, []),  # the transformer's loss (L1 on log-slowdown)
    "gb-tuned": ("gb", {}, GB_GRID), "transformer-tuned": ("transformer", {}, TRANSFORMER_GRID),
    # ablations of the transformer (defaults otherwise): one member, no crop augmentation, one branch, no window
    "tf-1member": ("transformer", {"members": 1}, []), "tf-nocrop": ("transformer", {"crop": 1.0}, []),
    "tf-temporal": ("transformer", {"branches": "temporal"}, []),
    "tf-metric": ("transformer", {"branches": "metric"}, []),
    "tf-descriptors": ("transformer", {"branches": "none"}, []),
    "tf-l1": ("transformer", {"loss": "l1"}, []),  # L1 on log-slowdown instead of the evaluation's relative error
    # descriptor groups (EXTRAS; default both): none (as before the groups existed) or one of them
    "gb-base": ("gb", {"extras": ()}, []), "tf-base": ("transformer", {"extras": (), "loss": "l1"}, []),
    "gb-l1-base": ("gb", {"loss": "absolute_error", "extras": ()}, []),
    "gb-l1-load": ("gb", {"loss": "absolute_error", "extras": ("load",)}, []),
    "gb-l1-threads": ("gb", {"loss": "absolute_error", "extras": ("threads",)}, []),
    "gb-relative": ("gb", {"loss": "relative"}, []),
    # where the co-runners run relative to the target (EXTRAS "placement"; pinned datasets)
    "gb-place": ("gb", {"extras": ("load", "threads", "placement")}, []),
    "gb-l1-place": ("gb", {"loss": "absolute_error", "extras": ("load", "placement")}, []),
    "tf-place": ("transformer", {"extras": ("load", "threads", "placement")}, []),
    # how the scheduler's time slices cut the target's inferences (EXTRAS "slice")
    "gb-slice": ("gb", {"extras": ("load", "threads", "slice")}, []),
    "gb-l1-slice": ("gb", {"loss": "absolute_error", "extras": ("load", "slice")}, []),
    "tf-slice": ("transformer", {"extras": ("load", "threads", "slice")}, []),
    "slice": ("slice", {}, []),  # the time-slice mixture alone
    "gb-over-slice": ("gb", {"extras": ("load", "threads", "slice"), "base": "slice"}, []),
    "gb-l1-over-slice": ("gb", {"loss": "absolute_error", "extras": ("load", "slice"), "base": "slice"}, []),
    "tf-over-slice": ("transformer", {"extras": ("load", "threads", "slice"), "base": "slice"}, []),
    "tf-l1-over-slice": ("transformer", {"loss": "l1", "extras": ("load", "threads", "slice"), "base": "slice"}, []),
    # the co-runners' pressure measured by probes on the target's cores (EXTRAS "pressure"; needs pressure.csv)
    "gb-l1-slice-press": ("gb", {"loss": "absolute_error", "extras": ("load", "slice", "pressure")}, []),
    "gb-l1-over-slice-press": ("gb", {"loss": "absolute_error", "extras": ("load", "slice", "pressure"),
                                      "base": "slice"}, []),
    "tf-slice-press": ("transformer", {"extras": ("load", "threads", "slice", "pressure")}, []),
    "tf-over-slice-press": ("transformer", {"extras": ("load", "threads", "slice", "pressure"), "base": "slice"}, []),
    # and the refill the co-runners cost the target once per slice (EXTRAS "refill"; pressure.csv with refill)
    "gb-l1-over-slice-refill": ("gb", {"loss": "absolute_error", "extras": ("load", "slice", "pressure", "refill"),
                                       "base": "slice"}, []),
    "tf-slice-refill": ("transformer", {"extras": ("load", "threads", "slice", "pressure", "refill")}, []),
    "tf-over-slice-refill": ("transformer", {"extras": ("load", "threads", "slice", "pressure", "refill"),
                                             "base": "slice"}, []),
    # the time-slice mixture at the target's contended latency (a few fitted parameters), and boosting over it
    "contended-slice": ("contended-slice", {}, []),
    "contended-slice-refill": ("contended-slice", {"extras": ("slice", "pressure", "refill")}, []),
    "contended-slice-mem": ("contended-slice", {"kernels": ("stream", "gather")}, []),  # added after a first score
    "gb-l1-over-contended": ("gb", {"loss": "absolute_error", "extras": ("load", "slice", "pressure"),
                                    "base": "contended"}, []),
}
#: re-recordings of a sample of the dataset's scenarios (benchmarks/interference_retest.py)
RETEST = "retest.csv"


def model(label: str, seed: int, members: int, threads: int):
    """The model of variant `label` seeded with `seed`; transformers get `members` (unless the variant sets it)."""
    kind, settings, _ = VARIANTS[label]
    if kind == "transformer":
        return make_model(kind, **{"seed": seed, "members": members, "threads": threads, **settings})
    return make_model(kind, **({"random_state": seed} if kind == "gb" else {}), **settings)


def by_sharing(predictions: pd.DataFrame, sharing: dict[str, bool], target: str) -> dict:
    """Pooled MAE % of `target` over the held-out scenarios with ("shared") and without ("alone") a co-runner thread
    on the target's cores; None for a group without scenarios."""
    shared = predictions["scenario_id"].map(sharing).astype(bool)
    return {f"mae_{target}_{name}": mae_percent(predictions.loc[rows, f"pred_{target}"], predictions.loc[rows, target])
            if rows.any() else None for name, rows in (("shared", shared), ("alone", ~shared))}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _scaled(figures: dict, key: str, scale: float) -> str:
    """figures[key] * scale, formatted ("n/a" when absent)."""
    return _fmt(figures[key] * scale if key in figures else None)


def noise_ceiling(data_dirs: list[Path]) -> dict | None:
    """Test-retest errors of the slowdowns: scenarios recorded again with their dataset's placement and phase length,
    scored like a model that predicts the second measurement (|retest - original| / original), pooled over the
    datasets that have a retest file (the mean slowdown over those whose retest file has it); None when none has."""
    errors = []
    for data_dir in data_dirs:
        path = data_dir / RETEST
        if not path.exists():
            continue
        retest = pd.read_csv(path)
        original = load_colocation_dataset(data_dir)[0].set_index("scenario_id")  # with the mean slowdown
        placement = original["placement"].iloc[0] if "placement" in original.columns else "free"
        same = retest["placement"] == placement if "placement" in retest.columns else placement == "free"
        retest = retest[same & (retest["phase_s"] == original["phase_s"].iloc[0])]
        measured = original.loc[retest["scenario_id"]]
        errors.append(pd.DataFrame({t: np.abs(retest[t].to_numpy() / measured[t].to_numpy() - 1) * 100
                                    for t in TARGETS if t in retest.columns}))
    errors = pd.concat(errors, ignore_index=True) if errors else pd.DataFrame()
    if errors.empty:
        return None
    return {**{f"n_{t}": int(errors[t].notna().sum()) for t in errors.columns},
            **{f"mae_{t}": float(errors[t].mean()) for t in errors.columns},
            **{f"median_ape_{t}": float(errors[t].median()) for t in errors.columns}}


def load_all(paths: list[Path]) -> InterferenceData:
    """The undisturbed scenarios of every dataset in `paths`, in order, as one."""
    data = InterferenceData.load(paths[0])
    for path in paths[1:]:
        data = data.concat(InterferenceData.load(path))
    return data


#: the issue's goal: at least this much lower MAE than gradient boosting
GOAL_VS_GB = 0.28
#: `--statistic` -> the target whose MAE the tables, goals and summary lead with
STATISTICS = {"median": "slowdown", "mean": "slowdown_mean"}


def evaluate(args: argparse.Namespace, data: InterferenceData, seed: int, sharing: dict[str, bool],
             ceiling: dict | None, test: InterferenceData | None = None,
             extra: InterferenceData | None = None) -> list[dict]:
    """Cross-validate every model of `--models` on every split with `seed`, `extra` joining the training folds
    (split "dataset": fit on `data`, score on `test`); prints the tables, returns the figures (one record per model
    and split, with its seed). The tables' headline (vs gb, goals, shared / alone) is the `--statistic`'s slowdown."""
    t = STATISTICS[args.statistic]
    everything = []
    for split in args.splits.split(","):
        results = {}
        for label in args.models.split(","):
            grid = VARIANTS[label][2]
            if split == "dataset":
                result = evaluate_on(model(label, seed, args.members, args.threads), data, test)
            else:
                result = cross_validate(model(label, seed, args.members, args.threads), data, split, args.folds,
                                        seed, grid=grid, tune_params={"members": 2} if label.startswith("trans")
                                        else None, extra_train=extra)
            results[label] = {**result.summary(), "model": label, "seed": seed,
                              **by_sharing(result.predictions, sharing, t)}
            if grid:
                results[label]["chosen"] = result.folds["chosen"].tolist()
            print(f"  [{split}] {label}: done in {results[label]['fit_s']:.1f} s of training"
                  f"{' (incl. nested tuning)' if grid else ''}", flush=True)
        gb = results.get("gb", {}).get(f"mae_{t}")
        none = results.get("none", {}).get(f"mae_{t}")
        trained_on = ", ".join(map(str, args.data))
        print(f"\ntrained on {trained_on}, tested on {args.test_data} (seed {seed})" if split == "dataset"
              else f"\nleave-{split}-out ({args.folds} folds, seed {seed})")
        print(f"MAE % ({t}, pooled) by co-runner on the target's cores: " + "; ".join(
            f"{label} shared {_fmt(s[f'mae_{t}_shared'])} / alone {_fmt(s[f'mae_{t}_alone'])}"
            for label, s in results.items()))
        print(f"{'model':<17} {'MAE median':>10} {'MAE p90':>8} {'MAE p99':>8} {'MAE mean':>8} "
              f"{'median APE':>10} {'vs gb':>7} {'vs none':>7} {'train s':>8}  per fold ({t}; median APE and vs: "
              f"{t} too)")
        for label, s in results.items():
            s["improvement_over_gb"] = 1 - s[f"mae_{t}"] / gb if gb else None
            vs_gb = f"{100 * s['improvement_over_gb']:+6.1f}%" if gb else "n/a"
            vs_none = f"{100 * (1 - s[f'mae_{t}'] / none):+6.1f}%" if none else "n/a"
            print(f"{label:<17} {s['mae_slowdown']:10.2f} {s['mae_slowdown_p90']:8.2f} {s['mae_slowdown_p99']:8.2f} "
                  f"{s['mae_slowdown_mean']:8.2f} {s[f'median_ape_{t}']:10.2f} {vs_gb:>7} {vs_none:>7} "
                  f"{s['fit_s']:8.1f}  {' '.join(f'{v:.2f}' for v in s[f'fold_mae_{t}'])}")
        if ceiling and split != "dataset":
            for label, scale, note in (("noise: retest", 1.0, "a second recording of the scenario used as the "
                                                               "prediction"),
                                       ("noise: ideal", 2 ** -0.5, "retest / sqrt 2: the expected error of a perfect "
                                                                   "predictor of the scenario's expected slowdowns")):
                print(f"{label:<17} " + " ".join(f"{_scaled(ceiling, f'mae_{target}', scale):>{width}}"
                                                 for target, width in zip(TARGETS, (10, 8, 8, 8)))
                      + f" {_scaled(ceiling, f'median_ape_{t}', scale):>10}  "
                      f"(n={ceiling.get(f'n_{t}', 0)} for {t}: {note})")
        for label in [label for label in results if label not in ("none", "gb")]:
            if gb and split != "dataset":  # the goals are on held-out workloads and targets
                s = results[label]
                print(f"goals ({label}, {t}): MAE <= 5 %: {'met' if s[f'mae_{t}'] <= 5 else 'NOT met'} "
                      f"({s[f'mae_{t}']:.2f} %); >= 28 % better than gb: "
                      f"{'met' if s['improvement_over_gb'] >= GOAL_VS_GB else 'NOT met'} "
                      f"({100 * s['improvement_over_gb']:+.1f} %)")
            if label in ("transformer", "transformer-tuned") and "gb-tuned" in results:
                print(f"  {label} vs gb-tuned: "
                      f"{100 * (1 - results[label][f'mae_{t}'] / results['gb-tuned'][f'mae_{t}']):+.1f} %")
        for label in ("transformer-tuned", "gb-tuned"):
            if label in results:
                print(f"  {label} picked per fold: {'; '.join(results[label]['chosen'])}")
        everything.extend(results.values())
    return everything


def seed_summary(records: list[dict], statistic: str = "median") -> None:
    """Per split and model: MAE % of the `statistic`'s slowdown per seed and its mean over seeds, each with the
    improvement over gb (of the same seed; of gb's mean), and whether the model beats gb by GOAL_VS_GB on every seed of
    every split (a model or gb missing on some seed or split: not met)."""
    target = STATISTICS[statistic]
    table = {(r["split"], r["model"], r["seed"]): r.get(f"mae_{target}") for r in records}  # a later record wins
    splits = list(dict.fromkeys(r["split"] for r in records))
    labels = list(dict.fromkeys(r["model"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    every = {label: label != "gb" for label in labels}

    def cell(mae: float | None, gb: float | None) -> str:
        if mae is None:
            return "n/a"
        return f"{mae:.2f} ({100 * (1 - mae / gb):+.1f}%)" if gb else f"{mae:.2f}"

    print(f"\nsummary over seeds {', '.join(map(str, seeds))}: MAE % of the {statistic} slowdown per seed (vs gb of "
          f"the same seed), mean over seeds (vs gb's mean), worst improvement over gb")
    for split in splits:
        gb = {seed: table.get((split, "gb", seed)) for seed in seeds}
        gb_mean = float(np.mean(list(gb.values()))) if all(v is not None for v in gb.values()) else None
        print("\ntrained on --data, tested on --test-data" if split == "dataset" else f"\nleave-{split}-out")
        print(f"{'model':<17} " + " ".join(f"{'seed ' + str(seed):>16}" for seed in seeds)
              + f" {'mean':>16} {'worst vs gb':>11}")
        for label in labels:
            maes = [table.get((split, label, seed)) for seed in seeds]
            complete = all(v is not None for v in maes)
            mean = float(np.mean(maes)) if complete else None
            gains = [1 - m / g for m, g in zip(maes, gb.values()) if m is not None and g]
            worst = min(gains) if complete and len(gains) == len(seeds) else None
            if split != "dataset":  # the goal is on held-out workloads and targets
                every[label] &= worst is not None and worst >= GOAL_VS_GB
            print(f"{label:<17} " + " ".join(f"{cell(m, g):>16}" for m, g in zip(maes, gb.values()))
                  + f" {cell(mean, gb_mean):>16} {'n/a' if worst is None else f'{100 * worst:+.1f}%':>11}")
    held_out = [split for split in splits if split != "dataset"]
    for label in labels:
        if label != "gb" and held_out:
            print(f"goal ({label}): >= {100 * GOAL_VS_GB:.0f} % better than gb on every seed of "
                  f"{' and '.join(held_out)}: {'met' if every[label] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="The dataset (default data/interference-cpu); "
                        "repeated: the union of the recordings (one machine's, e.g. several recording sessions).")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", help="Comma-separated seeds (overrides --seed); ends with a summary over them.")
    parser.add_argument("--models", default="none,linear,gb,transformer")
    parser.add_argument("--splits", default="workload,target")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="Also write every figure to this JSON file.")
    parser.add_argument("--test-data", type=Path, help="Another dataset: adds the split 'dataset' (fit on --data, "
                        "score on this).")
    parser.add_argument("--extra-train", type=Path, action="append", help="Another dataset added to every training "
                        "fold (less its scenarios of the held-out workloads or targets; repeatable); test folds stay "
                        "within --data.")
    parser.add_argument("--statistic", choices=tuple(STATISTICS), default="median",
                        help="The slowdown the tables, goals and summary lead with: of the median latency (default) "
                        "or of the mean latency.")
    parser.add_argument("--summarize", help="Comma-separated JSON files of earlier runs (--json): print the summary "
                        "over their seeds, train nothing.")
    args = parser.parse_args()
    if args.summarize:
        files = [Path(name) for name in args.summarize.split(",")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            parser.error(f"no such file: {', '.join(missing)}")
        runs = [json.loads(f.read_text()) for f in files]
        if len({(run["data"], run.get("extra_train")) for run in runs}) > 1:
            parser.error("the files are from different datasets or extra training data: " + ", ".join(
                sorted({f"{r['data']} + {r.get('extra_train')}" for r in runs})))
        records = [r for run in runs for r in run["results"]]
        if any("seed" not in r for r in records):
            parser.error("a file has no seeds (written before --seeds existed); rerun it")
        print(f"data: {runs[0]['data']} ({runs[0]['scenarios']} scenarios); from {', '.join(map(str, files))}")
        seed_summary(records, args.statistic)
        return
    args.data = args.data or [ROOT / "data" / "interference-cpu"]
    unknown = [label for label in args.models.split(",") if label not in VARIANTS]
    if unknown:
        parser.error(f"unknown models {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [args.seed]
    if args.test_data and "dataset" not in args.splits.split(","):
        args.splits += ",dataset"
    if "dataset" in args.splits.split(",") and not args.test_data:
        parser.error("the split 'dataset' needs --test-data")
    if args.test_data and args.extra_train:
        parser.error("--extra-train joins the held-out splits' training folds; it does not go with --test-data")
    for option, path in [*(("--data", p) for p in args.data), ("--test-data", args.test_data),
                         *(("--extra-train", p) for p in args.extra_train or [])]:
        if path and not (path / "scenarios.csv").is_file():
            parser.error(f"{option} {path} is not a co-location dataset (no scenarios.csv)")
    data = load_all(args.data)
    test = InterferenceData.load(args.test_data) if args.test_data else None
    extra = load_all(args.extra_train) if args.extra_train else None
    table = data.scenarios
    print(f"data: {', '.join(map(str, args.data))} ({len(data)} undisturbed scenarios, "
          f"{table['workload'].nunique()} workloads, {table['target'].nunique()} targets, "
          f"{len(data.metric_names)} window metrics)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {args.threads}; folds {args.folds}, seed{'s' if len(seeds) > 1 else ''} "
          f"{', '.join(map(str, seeds))}, transformer members {args.members}")
    repeat = (table["isolated_after_median_ms"] / table["isolated_median_ms"] - 1).abs() * 100
    print(f"noise context: isolated median after vs before the scenario differs by {repeat.mean():.2f} % on "
          f"average (median {repeat.median():.2f} %)")
    ceiling = noise_ceiling(args.data)
    sharing = {sid: bool(shared) for source in [data] + ([test] if test else [])
               for sid, shared in zip(source.scenarios["scenario_id"], source.placement()["shared_threads"] > 0)}
    placements = table["placement"].unique() if "placement" in table.columns else ["free"]
    shared = sum(sharing[sid] for sid in table["scenario_id"])
    print(f"{shared} scenarios of --data with a co-runner thread on the target's cores, {len(table) - shared} "
          f"without (placement {', '.join(placements)})")
    if extra is not None:
        print(f"extra training data: {', '.join(map(str, args.extra_train))} ({len(extra)} undisturbed scenarios, "
              f"{extra.scenarios['target'].nunique()} targets, in every training fold less the held-out groups)")
    print("MAE %: mean over scenarios of |predicted - measured| / measured * 100, averaged over folds; "
          "median APE: median over all held-out scenarios of the same ratio")
    everything = []
    for seed in seeds:
        if len(seeds) > 1:
            print(f"\n=== seed {seed} ===", flush=True)
        everything.extend(evaluate(args, data, seed, sharing, ceiling, test, extra))
    if len(seeds) > 1:
        seed_summary(everything, args.statistic)
    if args.json:
        args.json.write_text(json.dumps({"data": ",".join(map(str, args.data)), "scenarios": len(data),
                                         "results": everything,
                                         "test_data": str(args.test_data) if args.test_data else None,
                                         "extra_train": ",".join(map(str, args.extra_train or [])) or None,
                                         "noise_ceiling": ceiling}, indent=1))


if __name__ == "__main__":
    main()
