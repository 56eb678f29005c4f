"""Noise ceiling of the co-location dataset: re-record a sample of its scenarios and compare the slowdowns.

A stratified sample of the undisturbed scenarios of data/interference-cpu (one per slowdown quantile bin, so
the sample weighs the slowdown range as the dataset does) is recorded again with `hwlat interference record`
(same target, workload, intensity, interval, attempts) into a separate store: once with the dataset's 2 s
phases, and a subset twice with longer phases. The 2 s run, then the two long runs together, hold
`flock /tmp/hwlat-bench.lock` (5-8 minutes each); reruns resume (a scenario already in the store is skipped). The re-recordings are written to
data/interference-cpu/retest.csv (one row per re-recording; the original is the row of scenarios.csv with the
same `scenario_id`), and the script prints:

- test-retest MAE % of the slowdown, |retest - original| / original * 100 (the error of a "model" that
  predicts a second measurement of the scenario), and that / sqrt(2), the expected error of a predictor of the
  scenario's mean slowdown when both measurements have independent errors of the same size;
- for the long-phase runs, the same error between their two runs over the whole phase and over its first 2 s
  (the same runs truncated, `slowdown_first2s`), which says whether longer phases reduce the noise;
- pinned pilot: the same sample recorded twice with `--placement pinned` (fixed cores per process, runtime threads
  that sleep instead of spin-waiting), runs a and b in separate lock holds at different moments; the error between
  the two runs says whether a controlled placement makes slowdowns repeatable. Pinned slowdowns are a different
  quantity from the dataset's free ones, so they are compared with each other only.

- `--again` (any dataset, `--data DIR`): every undisturbed scenario recorded once more with the dataset's own
  placement, phase and interval (run "again", one lock hold), reported overall and by kind of scenario: a CPU-bound
  co-runner on the target's core with the target near half a slice ("knife edge": isolated / slice in 0.3-0.7,
  where the median flips between ~1x and ~3x), other scenarios with a co-runner on the target's core, and the rest.

    python benchmarks/interference_retest.py                       # record what is missing, then report
    python benchmarks/interference_retest.py --report-only         # report from data/interference-cpu/retest.csv
    python benchmarks/interference_retest.py --data data/interference-cpu-pinned-c --again   # the whole dataset again
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hwlat._files import write_atomically

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "interference-cpu"
LOCK = "/tmp/hwlat-bench.lock"
RUNTIMES = {"onnxruntime": "ort", "torch": "torch"}
SLOWDOWNS = ("slowdown", "slowdown_p90", "slowdown_p99")
#: seconds of phase that the truncated slowdowns use (the dataset's phase length)
SHORT_S = 2.0
#: the knife edge: a co-runner thread on the target's core and isolated / slice in this range
KNIFE_EDGE = (0.3, 0.7)
#: a slowdown this large is a collapse (2-thread PyTorch beside busy co-runners), reported apart from the rest
COLLAPSE = 10.0


def sample(scenarios: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """One undisturbed scenario per slowdown quantile bin (`count` bins), ordered by slowdown."""
    clean = scenarios[scenarios["disturbed"] == 0].sort_values("slowdown").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    bins = np.array_split(np.arange(len(clean)), count)
    return clean.iloc[[int(rng.choice(b)) for b in bins]].reset_index(drop=True)


def target_spec(row) -> str:
    """The `--target` of a scenario row: SOURCE@RUNTIME-tN."""
    return f"{row.target}@{RUNTIMES[row.target_runtime]}-t{int(row.target_threads)}"


def stored(db: Path) -> int:
    """Scenarios already in the store at `db` (0 when it does not exist)."""
    from hwlat.store import ColocationStore

    if not db.exists():
        return 0
    with ColocationStore(str(db), create=False) as store:
        return len(store.scenarios_frame())


def record(runs: list[tuple[pd.DataFrame, float, str, Path]]) -> None:
    """Record the rows of each run again (rows, phase seconds, placement, store): one `record` call per workload
    and intensity, all under one hold of the benchmark lock."""
    commands = []
    for rows, phase_s, placement, db in runs:
        for (workload, intensity), group in rows.groupby(["workload", "intensity"], sort=False):
            commands.append([sys.executable, "-m", "hwlat", "interference", "record",
                             *[a for t in sorted({target_spec(r) for r in group.itertuples()}) for a in ("--target", t)],
                             "--workload", workload, "--intensity", str(intensity), "--phase", str(phase_s),
                             "--interval", str(float(group["interval_s"].iloc[0])), "--placement", placement,
                             "--attempts", "2",
                             "--quiet-wait", "3", "--db", str(db), "--json"])
    script = " && ".join(shlex.join(c) for c in commands)
    done = subprocess.run(["flock", LOCK, "sh", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in done.stdout.strip().splitlines():
        print(f"  {line}", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"record failed (exit code {done.returncode}); rerun to resume")


def retest_rows(db: Path, run: str, originals: pd.DataFrame, work: Path) -> pd.DataFrame:
    """The store's scenarios matched to the original scenario ids, with slowdowns over the first SHORT_S too."""
    out = work / run
    subprocess.run([sys.executable, "-m", "hwlat", "interference", "export", "--out", str(out), "--db", str(db),
                    "--json"], cwd=ROOT, stdout=subprocess.PIPE, check=True)
    from hwlat.profilers import load_colocation_dataset

    scenarios, _ = load_colocation_dataset(out)
    inferences = pd.read_parquet(out / "inferences.parquet")
    early = inferences[inferences["end_s"] <= SHORT_S]
    isolated = early[early["phase"] == "isolated_before"].groupby("scenario_id")["latency_ms"].median()
    colocated = early[early["phase"] == "colocated"].groupby("scenario_id")["latency_ms"]
    for column, value in (("slowdown", colocated.median()), ("slowdown_p90", colocated.quantile(0.9)),
                          ("slowdown_p99", colocated.quantile(0.99))):
        scenarios[f"{column}_first2s"] = scenarios["scenario_id"].map(value / isolated)
    key = ["target", "target_runtime", "target_threads", "workload", "intensity"]
    ids = originals[key + ["scenario_id"]].rename(columns={"scenario_id": "original_id"})
    matched = scenarios.merge(ids, on=key, how="inner")
    keep = ["original_id", *key, "placement", "phase_s", *SLOWDOWNS, "slowdown_mean",
            *(f"{s}_first2s" for s in SLOWDOWNS), "isolated_median_ms",
            "colocated_n", "disturbed", "attempts", "background_util", "created_at"]
    return matched[keep].rename(columns={"original_id": "scenario_id"}).assign(run=run)


def mae(predicted: pd.Series, measured: pd.Series) -> float:
    """MAE % relative to `measured` (as the models are scored)."""
    return float((np.abs(predicted.to_numpy() - measured.to_numpy()) / measured.to_numpy()).mean() * 100)


def report(retest: pd.DataFrame, originals: pd.DataFrame) -> dict:
    """Print and return the test-retest figures."""
    original = originals.set_index("scenario_id")
    figures = {}
    short = retest[retest["run"] == "phase2"]
    both = short.assign(**{f"orig_{s}": short["scenario_id"].map(original[s]) for s in SLOWDOWNS})
    for name, rows in (("all", both), ("retest undisturbed", both[both["disturbed"] == 0])):
        values = {s: mae(rows[s], rows[f"orig_{s}"]) for s in SLOWDOWNS}
        median_ape = float(np.median(np.abs(rows["slowdown"] / rows["orig_slowdown"] - 1)) * 100)
        figures[f"phase2 {name}"] = {"n": len(rows), **values, "median_ape": median_ape}
        print(f"2 s phases, retest vs original ({name}, n={len(rows)}): MAE % slowdown {values['slowdown']:.2f} "
              f"(/sqrt2 {values['slowdown'] / np.sqrt(2):.2f}), median APE {median_ape:.2f}, "
              f"MAE p90 {values['slowdown_p90']:.2f}, MAE p99 {values['slowdown_p99']:.2f}")
    spread = both[["orig_slowdown", "slowdown"]].max(axis=1)
    calm = both[spread < COLLAPSE]
    print(f"  without scenarios that collapsed (slowdown >= {COLLAPSE:g} in a recording; n={len(calm)}): MAE % "
          f"slowdown {mae(calm['slowdown'], calm['orig_slowdown']):.2f}")
    for low, high in ((0, 1.2), (1.2, 2.0), (2.0, np.inf)):
        rows = both[(spread.ge(low)) & (spread.lt(high))]
        if len(rows):
            print(f"  larger of the two slowdowns in [{low}, {high}): n={len(rows)}, MAE % {mae(rows['slowdown'], rows['orig_slowdown']):.2f}")
    worst = both.assign(ape=np.abs(both["slowdown"] / both["orig_slowdown"] - 1) * 100).nlargest(3, "ape")
    print("  largest differences:", [(f"{r.target_runtime}-t{r.target_threads}", r.workload[:24],
                                      round(r.orig_slowdown, 2), round(r.slowdown, 2)) for r in worst.itertuples()])
    runs = sorted(r for r in retest["run"].unique() if r.startswith("phase") and r != "phase2")
    if len(runs) == 2:
        a, b = (retest[retest["run"] == r].set_index("scenario_id") for r in runs)
        common = a.index.intersection(b.index)
        a, b = a.loc[common], b.loc[common]
        long_s = float(a["phase_s"].iloc[0])
        calm = (a["slowdown"] < COLLAPSE) & (b["slowdown"] < COLLAPSE)
        for label, suffix in ((f"whole {long_s:g} s phases", ""), (f"first {SHORT_S:g} s of the same runs", "_first2s")):
            values = {s: mae(b[f"{s}{suffix}"], a[f"{s}{suffix}"]) for s in SLOWDOWNS}
            ape = np.abs(b[f"slowdown{suffix}"] / a[f"slowdown{suffix}"] - 1) * 100
            figures[f"long {label}"] = {"n": len(common), **values, "median_ape": float(ape.median()),
                                        "mae_slowdown_calm": float(ape[calm].mean()), "n_calm": int(calm.sum())}
            print(f"{label}, run b vs run a (n={len(common)}): MAE % slowdown {values['slowdown']:.2f}, median APE "
                  f"{ape.median():.2f}, MAE p90 {values['slowdown_p90']:.2f}, MAE p99 {values['slowdown_p99']:.2f}; "
                  f"without scenarios that collapsed (slowdown >= {COLLAPSE:g} in a run; n={int(calm.sum())}): "
                  f"MAE % slowdown {ape[calm].mean():.2f}")
        print("  isolated median ms, run a / run b:", [f"{x:.2f}/{y:.2f}" for x, y in
                                                        zip(a["isolated_median_ms"], b["isolated_median_ms"])])
        orig = original.loc[common]
        print(f"  vs the original 2 s recording: run a whole {mae(a['slowdown'], orig['slowdown']):.2f}, "
              f"first 2 s {mae(a['slowdown_first2s'], orig['slowdown']):.2f}; run b whole "
              f"{mae(b['slowdown'], orig['slowdown']):.2f}, first 2 s {mae(b['slowdown_first2s'], orig['slowdown']):.2f}")
    if {"pinned-a", "pinned-b"} <= set(retest["run"]):
        figures.update(pinned_report(retest, original))
    return figures


def pinned_report(retest: pd.DataFrame, original: pd.DataFrame) -> dict:
    """Test-retest of the pinned pilot: run b against run a, as the free retest is reported (MAE relative to a)."""
    a, b = (retest[retest["run"] == r].set_index("scenario_id") for r in ("pinned-a", "pinned-b"))
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    figures = {}
    for name, keep in (("all", pd.Series(True, index=common)),
                       ("both undisturbed", (a["disturbed"] == 0) & (b["disturbed"] == 0))):
        values = {s: mae(b.loc[keep, s], a.loc[keep, s]) for s in SLOWDOWNS}
        median_ape = float(np.median(np.abs(b.loc[keep, "slowdown"] / a.loc[keep, "slowdown"] - 1)) * 100)
        figures[f"pinned {name}"] = {"n": int(keep.sum()), **values, "median_ape": median_ape}
        print(f"pinned placement, run b vs run a ({name}, n={int(keep.sum())}): MAE % slowdown "
              f"{values['slowdown']:.2f} (/sqrt2 {values['slowdown'] / np.sqrt(2):.2f}), median APE {median_ape:.2f}, "
              f"MAE p90 {values['slowdown_p90']:.2f}, MAE p99 {values['slowdown_p99']:.2f}")
    print(f"  disturbed: run a {int(a['disturbed'].sum())}, run b {int(b['disturbed'].sum())} of {len(common)}; "
          f"recorded {a['created_at'].min()[:16]} and {b['created_at'].min()[:16]}")
    spread = pd.concat([a["slowdown"], b["slowdown"]], axis=1).max(axis=1)
    calm = spread < COLLAPSE
    print(f"  without scenarios that collapsed (slowdown >= {COLLAPSE:g} in a run; n={int(calm.sum())}): MAE % "
          f"slowdown {mae(b.loc[calm, 'slowdown'], a.loc[calm, 'slowdown']):.2f}")
    for low, high in ((0, 1.2), (1.2, 2.0), (2.0, np.inf)):
        rows = spread.ge(low) & spread.lt(high)
        if rows.any():
            value = mae(b.loc[rows, "slowdown"], a.loc[rows, "slowdown"])
            figures[f"pinned size [{low}, {high})"] = {"n": int(rows.sum()), "slowdown": value}
            print(f"  larger of the two slowdowns in [{low}, {high}): n={int(rows.sum())}, MAE % {value:.2f}")
    ape = (np.abs(b["slowdown"] / a["slowdown"] - 1) * 100).sort_values(ascending=False)
    print("  largest differences:", [(f"{a.at[i, 'target_runtime']}-t{a.at[i, 'target_threads']}",
                                      a.at[i, "workload"][:24], round(float(a.at[i, "slowdown"]), 2),
                                      round(float(b.at[i, "slowdown"]), 2)) for i in ape.index[:3]])
    tail = (np.abs(b["slowdown_p90"] / a["slowdown_p90"] - 1) * 100).sort_values(ascending=False)
    print(f"  MAE p90 without its largest difference (n={len(tail) - 1}): {tail.iloc[1:].mean():.2f} "
          f"({a.at[tail.index[0], 'target_runtime']}-t{a.at[tail.index[0], 'target_threads']} beside "
          f"{a.at[tail.index[0], 'workload'][:24]}: p90 slowdown {a.at[tail.index[0], 'slowdown_p90']:.2f} vs "
          f"{b.at[tail.index[0], 'slowdown_p90']:.2f})")
    drift = np.abs(b["isolated_median_ms"] / a["isolated_median_ms"] - 1) * 100
    print(f"  isolated medians, run b vs run a: mean change {drift.mean():.2f} %, max {drift.max():.2f} %")
    free = original.loc[common, "slowdown"]
    iso = a["isolated_median_ms"] / original.loc[common, "isolated_median_ms"]
    print(f"  (a different quantity, not a retest) pinned run a / original free slowdown: median "
          f"{float(np.median(a['slowdown'] / free)):.3f}, pinned mean {a['slowdown'].mean():.2f}x vs free "
          f"{free.mean():.2f}x; isolated median pinned / free: torch 2 threads "
          f"{iso[a['target_threads'] > 1].median():.2f}x, 1 thread {iso[a['target_threads'] == 1].median():.2f}x")
    return figures


def again_report(retest: pd.DataFrame, data_dir: Path) -> dict:
    """Test-retest of a whole dataset recorded again (run "again"): MAE % of the retest relative to the original,
    overall and by kind of scenario (knife edge, other shared core, not shared)."""
    from hwlat.interference import InterferenceData

    data = InterferenceData.load(data_dir)
    slices = data.time_slice()
    kind = pd.Series(np.where(slices["slice_competitors"] <= 0.5, "not shared",
                              np.where(slices["slice_ratio"].between(*KNIFE_EDGE), "knife edge", "other shared")),
                     index=data.scenarios["scenario_id"])
    again = retest[retest["run"] == "again"].set_index("scenario_id")
    original = data.scenarios.set_index("scenario_id").loc[again.index.intersection(kind.index)]
    again = again.loc[original.index]
    ape = np.abs(again["slowdown"] / original["slowdown"] - 1) * 100
    figures = {}
    print(f"{data_dir.name}: every undisturbed scenario recorded again, retest vs original (MAE % of the original)")
    for name, rows in (("all", ape.index), *((k, ape.index[kind.loc[ape.index] == k])
                                             for k in ("knife edge", "other shared", "not shared"))):
        if not len(rows):
            continue
        values = {s: mae(again.loc[rows, s], original.loc[rows, s]) for s in SLOWDOWNS}
        figures[f"again {name}"] = {"n": len(rows), **values, "median_ape": float(ape.loc[rows].median()),
                                    "share_of_error": float(ape.loc[rows].sum() / ape.sum())}
        print(f"  {name:<12} n={len(rows):3d}: MAE % slowdown {values['slowdown']:6.2f} (/sqrt2 "
              f"{values['slowdown'] / np.sqrt(2):5.2f}), median APE {ape.loc[rows].median():5.2f}, MAE p90 "
              f"{values['slowdown_p90']:6.2f}, MAE p99 {values['slowdown_p99']:6.2f}, "
              f"{100 * ape.loc[rows].sum() / ape.sum():3.0f} % of the error")
    drift = np.abs(again["isolated_median_ms"] / original["isolated_median_ms"] - 1) * 100
    print(f"  isolated medians, retest vs original: median change {drift.median():.2f} %, max {drift.max():.2f} %; "
          f"disturbed in the retest: {int(again['disturbed'].sum())} of {len(again)}")
    worst = ape.sort_values(ascending=False).index[:5]
    print("  largest differences (isolated ms, workload, original, retest):",
          [(round(float(original.at[i, "isolated_median_ms"]), 2), original.at[i, "workload"][:24],
            round(float(original.at[i, "slowdown"]), 2), round(float(again.at[i, "slowdown"]), 2)) for i in worst])
    return figures


def within_phase(originals: pd.DataFrame, data_dir: Path) -> None:
    """How much the slowdown of the dataset's own scenarios moves between the halves of one co-located phase."""
    inferences = pd.read_parquet(data_dir / "inferences.parquet")
    clean = originals[originals["disturbed"] == 0].set_index("scenario_id")
    colocated = inferences[(inferences["phase"] == "colocated") & inferences["scenario_id"].isin(clean.index)]
    half = colocated["end_s"] >= clean["phase_s"].iloc[0] / 2
    first, second = (colocated[h].groupby("scenario_id")["latency_ms"].median() for h in (~half, half))
    ape = (np.abs(second / first - 1) * 100).dropna()
    print(f"within one 2 s co-located phase of the dataset: the two halves' medians differ by {ape.mean():.2f} % "
          f"on average (median {ape.median():.2f} %, n={len(ape)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="scenarios re-recorded with 2 s phases")
    parser.add_argument("--long-count", type=int, default=8, help="of those, re-recorded twice with long phases")
    parser.add_argument("--long-phase", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/hwlat-interference-retest"))
    parser.add_argument("--data", type=Path, default=DATA, help="the dataset (default data/interference-cpu)")
    parser.add_argument("--again", action="store_true", help="record every undisturbed scenario of --data again, "
                        "with its own placement and phase (run 'again'), and report that")
    parser.add_argument("--report-only", action="store_true", help="only report from the dataset's retest.csv")
    parser.add_argument("--runs", default="all", help="comma-separated lock holds to record when missing: phase2, "
                        "long, pinned-a, pinned-b (default all); the report reads every run that is stored")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not (args.data / "scenarios.csv").is_file():
        parser.error(f"--data {args.data} is not a co-location dataset (no scenarios.csv)")
    originals = pd.read_csv(args.data / "scenarios.csv")
    if args.again:
        args.work = args.work / args.data.name  # one store per dataset
    if not args.report_only:
        args.work.mkdir(parents=True, exist_ok=True)
        phase_s = float(originals["phase_s"].iloc[0])
        if args.again:
            placement = str(originals["placement"].iloc[0]) if "placement" in originals.columns else "free"
            runs = [("again", originals[originals["disturbed"] == 0], phase_s, placement, "again")]
        else:
            chosen = sample(originals, args.count, args.seed)
            long = chosen.iloc[np.unique(np.linspace(0, len(chosen) - 1, args.long_count).round().astype(int))]
            # run name, rows, phase seconds, placement, lock hold (each hold records its runs back to back, 5-8 min)
            runs = [("phase2", chosen, phase_s, "free", "phase2"),
                    (f"phase{args.long_phase:g}-a", long, args.long_phase, "free", "long"),
                    (f"phase{args.long_phase:g}-b", long, args.long_phase, "free", "long"),
                    ("pinned-a", chosen, phase_s, "pinned", "pinned-a"),
                    ("pinned-b", chosen, phase_s, "pinned", "pinned-b")]
        holds = [h for h in dict.fromkeys(run[4] for run in runs) if args.runs == "all" or h in args.runs.split(",")]
        for hold in holds:
            missing = [(rows, seconds, placement, args.work / f"{run}.sqlite")
                       for run, rows, seconds, placement, h in runs
                       if h == hold and stored(args.work / f"{run}.sqlite") < len(rows)]
            if missing:
                print(f"recording {', '.join(m[3].stem for m in missing)}", flush=True)
                record(missing)
        frames = [retest_rows(args.work / f"{run}.sqlite", run, rows, args.work / "export")
                  for run, rows, *_ in runs if (args.work / f"{run}.sqlite").exists()]
        retest = pd.concat(frames, ignore_index=True)
        path = args.data / "retest.csv"
        if path.is_file():  # keep the runs recorded in other modes (or other work directories)
            kept = pd.read_csv(path)
            retest = pd.concat([kept[~kept["run"].isin(retest["run"])], retest], ignore_index=True)
        write_atomically({path: lambda out: retest.to_csv(out, index=False)})
        print(f"wrote {path} ({len(retest)} re-recordings)")
    if not (args.data / "retest.csv").is_file():
        parser.error(f"{args.data / 'retest.csv'} does not exist; run without --report-only to record it")
    retest = pd.read_csv(args.data / "retest.csv")
    if args.again and not retest["run"].eq("again").any():
        parser.error(f"{args.data / 'retest.csv'} has no run 'again'; run without --report-only to record it")
    figures = again_report(retest, args.data) if args.again else report(retest, originals)
    within_phase(originals, args.data)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
