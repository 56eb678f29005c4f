"""Record the shipped co-location datasets (data/interference-cpu, -pinned) with `hwlat interference record`.

Targets are NB201 cells spread over the latency range of data/nb201-cpu (ONNX Runtime, 1 thread), run with ONNX
Runtime and PyTorch at 1 and 2 threads; workloads are stressors (cpu, membw, cache at 1 and 2 processes), model
co-runners (ONNX Runtime and PyTorch at 1 and 2 threads) and mixes. The grid is recorded in passes, each covering
every target and every workload family, so a recording stopped early (`--passes`) still supports leave-workload-out
and leave-target-out. `--denser` records instead 7 other cells (ONNX Runtime, 1 thread), at the quantiles halfway
between the grid's, beside every workload, as a dataset of their own (pinned: data/interference-cpu-pinned-b).
`--knife-edge` records 6 other cells as PyTorch 1-thread targets, chosen by their data/nb201-cpu PyTorch latency
(`KNIFE_EDGE_MS`) to take about half a scheduler slice on the recreated, ~1.8x faster VM, where the median slowdown
beside a CPU-bound co-runner on the target's core flips (pinned: data/interference-cpu-pinned-c; run again with
another `--out`, the next-nearest cells not yet recorded: data/interference-cpu-pinned-f).
`--knife-edge-ort` does the same with 6 ONNX Runtime 1-thread cells (`KNIFE_EDGE_ORT_MS`, the slowest of
data/nb201-cpu), which take 0.34-0.46 of a slice there, just below the flip (pinned: data/interference-cpu-pinned-d;
run again with another `--out`, the next-nearest cells not yet recorded: data/interference-cpu-pinned-e).
Recording runs in chunks of at most `--chunk` seconds, each under
`flock /tmp/hwlat-bench.lock` (released between chunks), resuming every time. `--placement pinned` records with
fixed CPU affinities and passively waiting runtime threads (see `hwlat interference record --help`).
Prints the figures quoted in BENCHMARKS.md: scenarios, disturbed, recording time, sampling-interval jitter.

    python benchmarks/interference_collect.py                        # full dataset -> data/interference-cpu
    python benchmarks/interference_collect.py --placement pinned     # -> data/interference-cpu-pinned
    python benchmarks/interference_collect.py --placement pinned --denser   # 7 other cells -> ...-pinned-b
    python benchmarks/interference_collect.py --placement pinned --knife-edge   # 6 cells -> ...-pinned-c
    python benchmarks/interference_collect.py --placement pinned --knife-edge-ort   # 6 cells -> ...-pinned-d
    python benchmarks/interference_collect.py --placement pinned --knife-edge-ort --out data/interference-cpu-pinned-e \
        --db /tmp/hwlat-interference-pinned-e/colocation.sqlite                   # 6 more cells -> ...-pinned-e
    python benchmarks/interference_collect.py --placement pinned --knife-edge --out data/interference-cpu-pinned-f \
        --db /tmp/hwlat-interference-pinned-f/colocation.sqlite                   # 6 more cells -> ...-pinned-f
    python benchmarks/interference_collect.py --pilot                # 20 scenarios -> /tmp/hwlat-interference-pilot
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/hwlat-bench.lock"
QUANTILES = (0.02, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0)
#: the `--denser` cells: halfway between consecutive QUANTILES
DENSER_QUANTILES = tuple(round((low + high) / 2, 4) for low, high in zip(QUANTILES, QUANTILES[1:]))
#: the `--knife-edge` cells: PyTorch 1-thread latencies in data/nb201-cpu (old CPU, ms) they are nearest to
KNIFE_EDGE_MS = (2.6, 3.0, 3.3, 3.6, 4.0, 4.4)
#: the `--knife-edge-ort` cells: ONNX Runtime 1-thread latencies in data/nb201-cpu (old CPU, ms; its slowest cell
#: takes 3.36 ms) they are nearest to
KNIFE_EDGE_ORT_MS = (2.5, 2.7, 2.9, 3.05, 3.2, 3.36)
#: runtime -> (data/nb201-cpu platform, target suffix, latencies of the knife-edge cells)
_KNIFE_EDGE = {"torch": ("torch/t1/b1", "torch-t1", KNIFE_EDGE_MS),
               "onnxruntime": ("onnxruntime/t1/b1", "ort-t1", KNIFE_EDGE_ORT_MS)}
RETEST_NOTE = """
## Re-recordings: `retest.csv` (noise ceiling)
The pinned pilot of `data/interference-cpu/retest.csv` (runs `pinned-a` and `pinned-b`: the same target, workload,
intensity, 2 s phases, `--placement pinned`, recorded twice before this dataset, in separate lock holds) for the
scenarios of this dataset, with `scenario_id` set to this dataset's id; columns as in that file. Predicting this
dataset's slowdown by a re-recording measures the noise a model cannot beat (benchmarks/interference_models.py
prints it as "noise: retest").
"""


def nb201_targets(quantiles: tuple[float, ...] = QUANTILES) -> list[str]:
    """Cells at `quantiles` of the ONNX Runtime 1-thread latency in data/nb201-cpu (fastest to slowest)."""
    measured = pd.read_csv(ROOT / "data/nb201-cpu/measurements.csv", keep_default_na=False)
    ort = measured[(measured["platform"] == "onnxruntime/t1/b1") & (measured["tag"] == "")]
    ordered = ort.sort_values("median_ms")["arch"].tolist()
    return [ordered[round(q * (len(ordered) - 1))] for q in quantiles]


def plan(pilot: bool) -> list[tuple[list[str], list[str], list[float]]]:
    """(targets, workloads, intensities) of each `record` call."""
    cells = nb201_targets()
    small, medium, large = cells[1], cells[4], cells[6]
    targets = ([f"nb201:{c}@ort-t1" for c in cells] + [f"nb201:{c}@torch-t1" for c in (cells[0], cells[3], cells[6])]
               + [f"nb201:{cells[4]}@ort-t2", f"nb201:{cells[2]}@torch-t2"])
    stressors = ["cpu-x1", "cpu-x2", "membw-x1", "membw-x2", "cache-x1", "cache-x2"]
    models = [f"nb201:{medium}@ort-t1", f"nb201:{large}@ort-t2", f"nb201:{small}@torch-t1", f"nb201:{medium}@torch-t2"]
    mixes = ["membw-x1+cache-x1", f"cpu-x1+nb201:{medium}@ort-t1", f"cache-x1+nb201:{small}@torch-t1"]
    if pilot:
        return [([targets[1], targets[6], f"nb201:{cells[0]}@torch-t1", f"nb201:{cells[2]}@ort-t2"],
                 ["cpu-x1", "membw-x1", "cache-x2", models[0], mixes[0]], [1.0])]
    half = ["cpu-x2", "membw-x2", "cache-x2", models[1]]
    # passes over every target: one workload of each family, another of each family, the rest, half intensity
    first = [stressors[1], stressors[3], stressors[5], models[1], mixes[0]]
    second = [stressors[0], stressors[2], stressors[4], models[0], mixes[1]]
    rest = [w for w in stressors + models + mixes if w not in first + second]
    return [(targets, first, [1.0]), (targets, second, [1.0]), (targets, rest, [1.0]),
            (targets[:8:2] + targets[8:], half, [0.5])]


def denser_pass() -> tuple[list[str], list[str], list[float]]:
    """The `--denser` pass: the DENSER_QUANTILES cells (ONNX Runtime, 1 thread) beside every workload of the grid."""
    first, second, rest, _ = plan(pilot=False)
    return [f"nb201:{c}@ort-t1" for c in nb201_targets(DENSER_QUANTILES)], first[1] + second[1] + rest[1], [1.0]


def knife_edge_pass(exclude: set[str], runtime: str = "torch") -> tuple[list[str], list[str], list[float]]:
    """The `--knife-edge` (`--knife-edge-ort`) pass: per KNIFE_EDGE_MS (KNIFE_EDGE_ORT_MS) the cell, not in `exclude`
    nor chosen already, with the nearest 1-thread latency of `runtime` in data/nb201-cpu, as a 1-thread target of
    that runtime, beside every workload of the grid."""
    platform, suffix, latencies = _KNIFE_EDGE[runtime]
    measured = pd.read_csv(ROOT / "data/nb201-cpu/measurements.csv", keep_default_na=False)
    latency = measured[(measured["platform"] == platform) & (measured["tag"] == "")].set_index("arch")["median_ms"]
    cells: list[str] = []
    for ms in latencies:
        left = latency.drop([cell for cell in (*exclude, *cells) if cell in latency.index])
        cells.append(str((left - ms).abs().idxmin()))
    _, workloads, _ = denser_pass()
    return [f"nb201:{c}@{suffix}" for c in cells], workloads, [1.0]


def recorded_cells(out: Path) -> set[str]:
    """NB201 cells of the shipped pinned datasets but `out` (the one being recorded: a rerun after its export resumes
    the same cells)."""
    return {target.split(":", 1)[1] for path in sorted(ROOT.glob("data/interference-cpu-pinned*/scenarios.csv"))
            if path.parent.resolve() != out.resolve() for target in pd.read_csv(path)["target"]}


def copy_retest(scenarios: pd.DataFrame, out: Path) -> int:
    """Re-recordings of `scenarios` with their placement from data/interference-cpu/retest.csv (where
    benchmarks/interference_retest.py keeps pinned runs under the free scenarios' ids), written to `out`/retest.csv
    under this dataset's ids so the models' noise ceiling finds them; how many rows."""
    retest = pd.read_csv(ROOT / "data/interference-cpu/retest.csv")
    keys = ["target", "target_runtime", "target_threads", "workload", "intensity", "placement", "phase_s"]
    matched = retest.drop(columns="scenario_id").merge(scenarios[[*keys, "scenario_id"]], on=keys)
    if len(matched):
        matched[retest.columns].to_csv(out / "retest.csv", index=False)
    return len(matched)


def record_pass(targets: list[str], workloads: list[str], intensities: list[float], db: Path, work: Path,
                time_limit_s: float, phase_s: float, placement: str) -> tuple[dict, list[str]]:
    """One `hwlat interference record` run (the caller holds the benchmark lock); its JSON result and the command."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "targets.txt").write_text("\n".join(targets) + "\n")
    (work / "workloads.txt").write_text("\n".join(workloads) + "\n")
    command = [sys.executable, "-m", "hwlat", "interference", "record",
               "--targets", str(work / "targets.txt"), "--workloads", str(work / "workloads.txt"),
               *[arg for i in intensities for arg in ("--intensity", str(i))], "--phase", str(phase_s),
               "--interval", "0.1", "--placement", placement, "--attempts", "2", "--quiet-wait", "3",
               "--time-limit", f"{time_limit_s:.0f}", "--db", str(db), "--json"]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if not done.stdout.strip():
        raise SystemExit(f"record failed (exit code {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1]), command


def hold(passes: dict[int, tuple], db: Path, chunk_s: float, phase_s: float,
         placement: str) -> list[tuple[int, dict, list[str]]]:
    """Record the pending `passes` in order for up to `chunk_s` seconds under one hold of the benchmark lock;
    (pass number, result, command) of each record run."""
    runs = []
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        for number, (targets, workloads, intensities) in passes.items():
            left = chunk_s - (time.monotonic() - started)
            if left < 20:
                break
            result, command = record_pass(targets, workloads, intensities, db, db.parent / f"plan{number}", left,
                                          phase_s, placement)
            runs.append((number, result, command))
            if result["remaining"]:
                break
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pilot", action="store_true", help="20 scenarios only")
    parser.add_argument("--db", type=Path, default=None,
                        help="store (default /tmp/hwlat-interference[-pinned]/colocation.sqlite)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--chunk", type=float, default=420.0, help="seconds of recording per lock hold")
    parser.add_argument("--phase", type=float, default=2.0)
    parser.add_argument("--placement", choices=("free", "pinned"), default="free")
    parser.add_argument("--passes", type=int, default=None, help="record only the first N passes of the grid")
    extra = parser.add_mutually_exclusive_group()
    extra.add_argument("--denser", action="store_true",
                       help="record 7 other cells (halfway between the grid's) beside every workload instead")
    extra.add_argument("--knife-edge", action="store_true",
                       help="record 6 other cells as PyTorch 1-thread targets of about half a slice on this VM instead")
    extra.add_argument("--knife-edge-ort", action="store_true",
                       help="record 6 other cells as ONNX Runtime 1-thread targets of just under half a slice instead")
    args = parser.parse_args()
    if args.chunk < 60:
        parser.error("--chunk must be at least 60 seconds")
    pinned = args.placement == "pinned"
    suffix = ("-pinned" if pinned else "") + ("-b" if args.denser else "-c" if args.knife_edge
                                              else "-d" if args.knife_edge_ort else "")
    out = args.out or (Path("/tmp/hwlat-interference-pilot") if args.pilot else ROOT / f"data/interference-cpu{suffix}")
    args.db = args.db or Path(f"/tmp/hwlat-interference{suffix}") / "colocation.sqlite"
    args.db.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    chunks, commands, totals = 0, {}, {"recorded": 0, "disturbed": 0, "failed": 0}
    other = ([denser_pass()] if args.denser else [knife_edge_pass(recorded_cells(out))] if args.knife_edge
             else [knife_edge_pass(recorded_cells(out), "onnxruntime")] if args.knife_edge_ort else [])
    grid = [] if other else plan(args.pilot)[:args.passes]
    pending = dict(enumerate(other or grid))
    while pending:
        if chunks:
            time.sleep(20)  # leave the lock to the other benchmarks for a moment
        chunks += 1
        for number, result, command in hold(pending, args.db, args.chunk, args.phase, args.placement):
            for key in ("recorded", "disturbed"):
                totals[key] += result[key]
            totals["failed"] += len(result["failed"])
            print(f"hold {chunks}, pass {number}: {json.dumps(result)}", flush=True)
            if result["remaining"] == 0:
                commands[number] = command
                del pending[number]
    elapsed = time.monotonic() - started
    options = (" --pilot" if args.pilot else "") + (" --placement pinned" if pinned else "") + \
        (f" --passes {args.passes}" if args.passes else "") + (" --denser" if args.denser else "") + \
        (" --knife-edge" if args.knife_edge else "") + (" --knife-edge-ort" if args.knife_edge_ort else "")
    notes = "## Recording command\n`python benchmarks/interference_collect.py" + options + \
        "` runs, in lock holds (rerun until nothing remains):\n\n" + "\n".join(
            "```\n" + shlex.join(commands[n]).replace(sys.executable, "python") + "\n```" for n in sorted(commands)) + \
        "\n\nwith the target and workload files it writes (listed in `scenarios.csv`: `target`, `workload`). Each " \
        f"hold of at most `--chunk` seconds takes `{LOCK}` (the project's benchmark lock, flock) and is released for " \
        "20 s between holds; jobs " \
        "of the project's other developers that do not take the lock ran at times (see `background_util`, " \
        "`disturbed`). Figures computed from this dataset (slowdowns, sampling jitter, isolated medians against " \
        "`data/nb201-cpu`) are printed by the script and quoted in BENCHMARKS.md. Licence: MIT, like the project.\n"
    passes = len(plan(args.pilot))
    if args.denser:
        notes += (f"\nThe `--denser` pass: {len(DENSER_QUANTILES)} cells at the quantiles "
                  f"{', '.join(map(str, DENSER_QUANTILES))} of data/nb201-cpu's ONNX Runtime latency (halfway between "
                  "the grid's), each beside every workload of the grid.\n")
    elif args.knife_edge:
        notes += (f"\nThe `--knife-edge` pass: {len(KNIFE_EDGE_MS)} cells not in the other pinned datasets, each the "
                  f"one whose PyTorch 1-thread latency in data/nb201-cpu is nearest to "
                  f"{', '.join(map(str, KNIFE_EDGE_MS))} ms, as PyTorch 1-thread targets beside every workload of the "
                  "grid; on the recreated VM they take about half a scheduler slice (see `isolated_median_ms`).\n")
    elif args.knife_edge_ort:
        notes += (f"\nThe `--knife-edge-ort` pass: {len(KNIFE_EDGE_ORT_MS)} cells not in the other pinned datasets, "
                  f"each the one whose ONNX Runtime 1-thread latency in data/nb201-cpu is nearest to "
                  f"{', '.join(map(str, KNIFE_EDGE_ORT_MS))} ms, as ONNX Runtime 1-thread targets beside every "
                  "workload of the grid; on the recreated VM they take just under half a scheduler slice (see "
                  "`isolated_median_ms`).\n")
    elif len(grid) < passes:
        notes += (f"\nOnly the first {len(grid)} of the grid's {passes} passes were recorded (`--passes`); the "
                  "passes are listed in `plan` of benchmarks/interference_collect.py.\n")
    if pinned and not other:
        notes += RETEST_NOTE
    notes_file = args.db.parent / "notes.md"
    notes_file.write_text(notes)
    export = subprocess.run([sys.executable, "-m", "hwlat", "interference", "export", "--out", str(out), "--db",
                             str(args.db), "--notes", str(notes_file), "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, check=True)
    counts = json.loads(export.stdout)
    from hwlat.profilers import load_colocation_dataset

    scenarios, metrics = load_colocation_dataset(out)
    if pinned and not other:
        print(f"pinned re-recordings of this dataset's scenarios copied to {out / 'retest.csv'}: "
              f"{copy_retest(scenarios, out)} rows")
    jitter_ms = (metrics["t_s"] - (metrics["step"] + 1) * scenarios["interval_s"].iloc[0]).to_numpy() * 1e3
    clean = scenarios[scenarios["disturbed"] == 0]
    size_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    print(f"this run: {chunks} lock holds, {elapsed / 60:.1f} min, recorded {totals['recorded']} "
          f"({totals['disturbed']} disturbed), failed {totals['failed']}")
    print(f"dataset {out}: {counts['scenarios']} scenarios, {counts['disturbed']} disturbed "
          f"({counts['disturbed'] / counts['scenarios']:.0%}); undisturbed: {len(clean)} scenarios, "
          f"{clean['workload'].nunique()} workloads, {clean['target'].nunique()} targets, "
          f"{clean.groupby(['target', 'target_runtime', 'target_threads']).ngroups} target configurations; "
          f"{size_mb:.1f} MB")
    print(f"sampling jitter (actual - scheduled), ms: median {np.median(jitter_ms):.3f}, "
          f"p99 {np.percentile(jitter_ms, 99):.3f}, max {jitter_ms.max():.3f} over {jitter_ms.size} samples")
    per_family = clean.groupby("workload_family")[["slowdown", "slowdown_p90"]].agg(["count", "median", "max"])
    print("slowdown (co-located median / isolated median) and slowdown_p90 per workload family, undisturbed:")
    print(per_family.round(3).to_string())
    per_target = clean.groupby(["target", "target_runtime", "target_threads"])["isolated_median_ms"].median()
    print("isolated median per target configuration, ms (undisturbed):",
          sorted(round(float(ms), 3) for ms in per_target.to_numpy()))
    by_target = clean.groupby(["target_runtime", "target_threads"])[["slowdown", "slowdown_p90"]].median()
    print("by target runtime and threads, undisturbed: median slowdown / slowdown_p90",
          {f"{r}-t{t}": (round(a, 3), round(b, 3)) for (r, t), (a, b) in by_target.iterrows()})
    worst = clean.nlargest(3, "slowdown")
    print("largest undisturbed slowdowns:", [(f"{r.target_runtime}-t{r.target_threads}", r.workload_family,
                                              round(r.slowdown, 1)) for r in worst.itertuples()])
    print("by intensity (duty cycle), undisturbed: median slowdown",
          clean.groupby("intensity")["slowdown"].median().round(3).to_dict())
    busy = scenarios["background_util"] > 0.25
    print(f"background CPU use before the stored attempt > 25 %: {busy.mean():.0%} of scenarios; disturbed "
          f"{scenarios.loc[busy, 'disturbed'].mean():.0%} of those vs {scenarios.loc[~busy, 'disturbed'].mean():.0%}")
    reference = pd.read_csv(ROOT / "data/nb201-cpu/measurements.csv", keep_default_na=False)
    reference = reference[reference["tag"] == ""].set_index(["arch", "platform"])["median_ms"]
    for runtime, platform in (("onnxruntime", "onnxruntime/t1/b1"), ("torch", "torch/t1/b1")):
        rows = scenarios[(scenarios["target_runtime"] == runtime) & (scenarios["target_threads"] == 1)]
        if rows.empty:
            continue
        ratio = rows["isolated_median_ms"].to_numpy() / reference.loc[
            [(t.removeprefix("nb201:"), platform) for t in rows["target"]]].to_numpy()
        print(f"isolated median here / data/nb201-cpu median ({platform}): median {np.median(ratio):.2f}, "
              f"p10 {np.percentile(ratio, 10):.2f}, p90 {np.percentile(ratio, 90):.2f} over {ratio.size} scenarios")


if __name__ == "__main__":
    main()
