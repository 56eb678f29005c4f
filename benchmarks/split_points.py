"""Split points, predicted against real runs: latency error per split and whether the predicted best is best.

A unit is one model analysed once (fresh stage processes, every part measured anew) at every bandwidth: each
2-stage split (device-only and server-only included) is predicted from parts measured in the stage processes,
then run for real (device and server processes over rate-limited loopback TCP). A scenario is one model at one
bandwidth in one unit, so repeated units test the "best split" decision again on fresh measurements.

Units are saved one CSV each under --out as they finish; a rerun skips them (resumable), and --minutes bounds
one invocation (a unit is started only if its expected duration still fits), so the run can be chunked under
`flock`. Every invocation then prints, over all saved units: per model and bandwidth the median and 90th
percentile of |predicted / measured - 1| of end-to-end latency, the best-split match rate (strict, and within
a stated tolerance), the same split into clear scenarios and near-ties, the load other jobs put on the CPU, and
how much the measurements move by themselves (the same split measured and predicted again in another unit).

With `--race-rounds N`, every scenario's chosen split is also raced against the fastest other split of its single
real runs (`SplitSession.race`: N alternating real runs of each, a sign test), after those runs: one real run of each
plan orders plans closer than the run-to-run spread at random, a race tells whether the chosen one is faster
(confirmed), slower (refuted) or neither shown (undecided).

With `--stages 3` (or more) the plans cut the model into that many stages, over the servers of `--server` (the last
repeated), and `--bandwidth` may give a rate per link (`10Mbps/1Gbps`, see `hwlat split`); `--cuts N` restricts the
plans to N cut points evenly spaced over the model (the input and the output included), so that every plan can be
enumerated and run.

Usage: python benchmarks/split_points.py --out DIR [--repeats 5] [--minutes 8] [--models nb201:ARCH,resnet:18]
       [--bandwidth 10Mbps,100Mbps,1Gbps] [--device ...] [--server ...] [--rtt 0ms] [--race-rounds 0]
       [--stages 2] [--cuts N] [--batch 1] [--tvm-records DIR] [--summary-only]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from hwlat.split import (analyze_split, find_cuts, parse_networks, parse_rtts, parse_side, resolve_model,
                         static_shapes)
from hwlat.split import RACE_ALPHA
from hwlat._errors import HwlatError
from hwlat.split._api import CLOSE_CALL, PART_PROTOCOL, RUN_PROTOCOL
from hwlat.split._execute import compared_parts
from hwlat.split._sides import with_tvm_records

NB201 = "nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
FBNET = ("fbnet:k5_e6-k5_e1_g2-k5_e1-k3_e3-k3_e3-k3_e1-k3_e1-k3_e1-k3_e1_g2-k5_e6-k5_e1_g2-skip-k5_e1-k5_e1_g2-"
         "skip-k5_e3-k5_e1_g2-k5_e1-k5_e1_g2-skip-k3_e3-k5_e6")
#: a decision counts as right within tolerance when its measured regret is at most this, or at most the two
#: runs' combined relative 95 % CI half-widths or the model's noise floor (`noise_floor`) when wider
TOLERANCE = 0.02
#: a real run counts as quiet when other processes used at most this many cores meanwhile
QUIET = 0.05


def short_name(model: str) -> str:
    return model.split(":")[0] if len(model) > 30 else model


class OtherLoad:
    """CPU time used by processes other than this one and its children since the last call, in busy cores.

    Our two stage processes are pinned one per core, so any other runnable process delays one of them.
    """

    def __init__(self) -> None:
        self.last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        total = psutil.cpu_times()
        busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
        me = psutil.Process()
        ours = sum(me.cpu_times()[:4])  # this process and its reaped children
        for child in me.children(recursive=True):
            try:
                ours += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
        return time.perf_counter(), busy, ours

    def __call__(self) -> float:
        now = self._sample()
        (t0, busy0, ours0), (t1, busy1, ours1), self.last = self.last, now, now
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / max(t1 - t0, 1e-9)


def run_unit(model: str, repeat: int, args, sides) -> pd.DataFrame:
    """Analyse `model` once with every split verified; the table plus the unit's timing and the others' load.

    `other_cores_busy` of a split covers the time since the previous split's real run ended: its own real
    run, and for the first split of a bandwidth also the measurement of that bandwidth's parts.
    """
    start, unit_load, load = time.time(), OtherLoad(), OtherLoad()
    others: list[float] = []
    rtt_ms = parse_rtts(args.rtt)
    result = analyze_split(model, sides, parse_networks(args.bandwidth, len(sides), rtt_ms), rtt_ms=rtt_ms,
                           verify="all", **protocols(args), stream_seconds=args.stream_seconds,
                           on_plan=lambda plan, row: others.append(load()), race_rounds=args.race_rounds, race="all",
                           cuts=spaced_cuts(model, args.cuts), enumerate_limit=10 ** 6, batch_size=args.batch)
    return result.table.assign(model=short_name(model), repeat=repeat, unit_seconds=time.time() - start,
                               unit_other_cores_busy=unit_load(), other_cores_busy=others,
                               started=time.strftime("%H:%M:%S", time.localtime(start)))


def spaced_cuts(model: str, count: int) -> list[str] | None:
    """Names of `count` cut points evenly spaced over `model`'s cuts, the first (input) and last included; None
    (every cut) for 0."""
    if count <= 0:
        return None
    cuts = find_cuts(static_shapes(resolve_model(model).load()))
    return [cuts[i].after for i in sorted(set(np.linspace(0, len(cuts) - 1, count).round().astype(int)))]


def noise_floor(every: pd.DataFrame) -> pd.Series:
    """Per model, the median |measured / median - 1| of its device-only plan over every unit and bandwidth.

    That plan is the same computation everywhere (nothing is sent), so this is the run-to-run spread of the
    measurements themselves: no prediction can be compared with single real runs more closely than this.
    """
    alone = every[~every["plan"].str.contains("|", regex=False)]
    return alone.groupby("model", sort=False)["measured_latency_ms"].agg(
        lambda m: float((m / m.median() - 1).abs().median()) if len(m) > 1 else 0.0)


def summarize(table: pd.DataFrame, noise: float) -> dict:
    """Error and choice figures of one scenario (one model at one bandwidth in one unit).

    A near-tie is a scenario whose measured runner-up is within max(TOLERANCE, the two runs' CIs, `noise`)
    of the measured best; a choice is right within tolerance when its regret is within the same bound.
    """
    error = (table["latency_ms"] / table["measured_latency_ms"] - 1).abs()
    ranked = table.sort_values("measured_latency_ms")
    best, runner_up = ranked.iloc[0], ranked.iloc[1]
    chosen = table.loc[table["latency_ms"].idxmin()]
    margin = table["latency_ms"].nsmallest(2).iloc[-1] / chosen["latency_ms"] - 1
    regret = chosen["measured_latency_ms"] / best["measured_latency_ms"] - 1
    gap = runner_up["measured_latency_ms"] / best["measured_latency_ms"] - 1
    tie = max(TOLERANCE, noise, best["measured_latency_ci_rel"] + runner_up["measured_latency_ci_rel"])
    allowed = max(TOLERANCE, noise, best["measured_latency_ci_rel"] + chosen["measured_latency_ci_rel"])
    return {"splits": len(table), "median_abs_error": float(error.median()), "p90_abs_error": float(error.quantile(0.9)),
            "within_5pct": float((error <= 0.05).mean()), "match": bool(chosen["plan"] == best["plan"]),
            "match_tol": bool(regret <= allowed), "clear": bool(gap > tie), "gap": float(gap), "regret": float(regret),
            "quiet": bool(table["other_cores_busy"].max() <= QUIET), "close_call": bool(margin < CLOSE_CALL),
            "chosen": chosen["plan"], "measured_best": best["plan"]}


def report(every: pd.DataFrame) -> None:
    """Print the figures over every saved unit."""
    floor = noise_floor(every)
    rows = [{"model": model, "bandwidth": bandwidth, "repeat": repeat, **summarize(table, floor.get(model, 0.0))}
            for (model, repeat, bandwidth), table in every.groupby(["model", "repeat", "bandwidth"], sort=False)]
    scenarios = pd.DataFrame(rows)
    error = (every["latency_ms"] / every["measured_latency_ms"] - 1).abs()
    every = every.assign(abs_error=error)
    per = every.groupby(["model", "bandwidth"], sort=False).agg(
        splits=("abs_error", "size"), median_abs_error=("abs_error", "median"),
        p90_abs_error=("abs_error", lambda e: e.quantile(0.9)), within_5pct=("abs_error", lambda e: (e <= 0.05).mean()))
    choice = scenarios.groupby(["model", "bandwidth"], sort=False).agg(
        scenarios=("match", "size"), match=("match", "mean"), match_tol=("match_tol", "mean"),
        clear=("clear", "sum"), max_regret=("regret", "max"))
    picks = scenarios.groupby(["model", "bandwidth"], sort=False)["chosen"].agg(lambda c: c.value_counts().idxmax())
    # the same split at the same bandwidth in different units: how much real runs and predictions move by themselves
    same = every.groupby(["model", "bandwidth", "plan"], sort=False)
    spread = pd.DataFrame({name: same[column].agg(lambda v: (v / v.median() - 1).abs().median() if len(v) > 1
                                                  else np.nan)
                           for name, column in (("run_spread", "measured_latency_ms"), ("predicted_spread", "latency_ms"))})
    choice = choice.join(spread.groupby(level=[0, 1], sort=False).median())
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 45):
        print(per.join(choice).assign(usual_choice=picks).to_string(float_format="%.3f"))
        print("run_spread / predicted_spread: median over splits of |value / its median over units - 1| (same split,"
              " same bandwidth, different units)")
        units = every.groupby(["model", "repeat"], sort=False).agg(
            started=("started", "first"), seconds=("unit_seconds", "first"),
            other_cores_busy=("unit_other_cores_busy", "first"), busiest_run=("other_cores_busy", "max"))
        print(units.reset_index().to_string(index=False, float_format="%.2f"))
    narrow = every[every["measured_latency_ci_rel"] <= 0.02]
    quiet, loud = every[every["other_cores_busy"] <= QUIET], every[every["other_cores_busy"] > QUIET]
    print(f"all splits: median |latency error| {error.median():.3f} (goal <= 0.05), p90 {error.quantile(0.9):.3f}, "
          f"{(error <= 0.05).mean():.0%} "
          f"of {len(every)} within 5 %; on the {len(narrow)} runs with CI half-width <= 2 %: "
          f"{narrow['abs_error'].median():.3f}; on the {len(quiet)} runs while other jobs used <= {QUIET} cores: "
          f"{quiet['abs_error'].median():.3f}, on the {len(loud)} runs while they used more: "
          f"{loud['abs_error'].median():.3f}")
    signed = every["latency_ms"] / every["measured_latency_ms"] - 1
    print(f"signed error (predicted / measured - 1): median {signed.median():+.3f}; noise floor (device-only plan, "
          f"same computation in every unit and bandwidth: median |measured / its median - 1|): " + ", ".join(
              f"{model} {value:.3f}" for model, value in floor.items()))
    kind = np.select([~every["plan"].str.contains("|", regex=False), every["plan"].str.startswith("device[0:0]")],
                     ["device-only", "server-only"], "middle")
    bias = every.assign(kind=kind, signed=signed).pivot_table("signed", ["model", "bandwidth"], "kind", "median",
                                                                sort=False)
    print("median signed error by kind of plan (a bias of one kind can flip a near-tie):")
    print(bias.to_string(float_format="%+.3f"))
    clear, tie, calm = scenarios[scenarios["clear"]], scenarios[~scenarios["clear"]], scenarios[scenarios["quiet"]]

    def rate(column: pd.Series) -> str:
        return f"{column.mean():.0%}" if len(column) else "n/a"

    print(f"predicted best = measured best (strict) in {scenarios['match'].mean():.0%} of {len(scenarios)} scenarios "
          f"(goal >= 95 %); within tolerance (regret <= max({TOLERANCE:.0%}, CIs, noise floor)) "
          f"{scenarios['match_tol'].mean():.0%}")
    print(f"  clear scenarios (runner-up > max({TOLERANCE:.0%}, CIs, noise floor) behind the best): {len(clear)}, strict "
          f"{rate(clear['match'])}; near-ties: {len(tie)}, strict {rate(tie['match'])}, within tolerance "
          f"{rate(tie['match_tol'])}; median regret {np.median(scenarios['regret']):.3f}, "
          f"max {scenarios['regret'].max():.3f}")
    close, sure = scenarios[scenarios["close_call"]], scenarios[~scenarios["close_call"]]
    print(f"  predicted close calls (runner-up predicted < {CLOSE_CALL:.0%} slower, flagged by `hwlat split`): "
          f"{len(close)}, strict {rate(close['match'])}; the other {len(sure)}: strict {rate(sure['match'])}")
    print(f"  scenarios whose every real run was quiet (other jobs <= {QUIET} cores): {len(calm)}, strict "
          f"{rate(calm['match'])}, within tolerance {rate(calm['match_tol'])}")
    report_parts(every)
    if "race_rounds" in every:
        report_races(every, scenarios)


def report_parts(every: pd.DataFrame) -> None:
    """Where predictions and real runs part: per bandwidth, measured - predicted ms of each kind of part of the
    latency (a stage's compute; a hop: codec, transport, wire and delay) over every real run that recorded them."""
    gaps = [pd.DataFrame({"bandwidth": every["bandwidth"], "part": "hop" if "_to_" in part else "compute",
                          "gap": every[f"measured_{part}_ms"] - every[f"{part}_ms"]}).dropna()
            for part in compared_parts(every.columns)]
    if not gaps:
        return
    table = pd.concat(gaps).groupby(["bandwidth", "part"], sort=False)["gap"].agg(
        parts="size", median_ms="median", positive=lambda gap: (gap > 0).mean())
    print("measured - predicted per part of the latency (ms; positive: the part took longer than predicted):")
    print(table.unstack("part").to_string(float_format="%.3f"))


def report_races(every: pd.DataFrame, scenarios: pd.DataFrame) -> None:
    """The races of each scenario's chosen split against the fastest other one measured: confirmed, refuted or
    undecided (sign test p >= RACE_ALPHA), per model and bandwidth and over all, beside the single runs' verdict."""
    raced = every[every["race_rounds"].notna()].assign(
        outcome=lambda r: r["race_faster"].map({"first": "confirmed", "second": "refuted", "neither": "undecided"}))
    keyed = raced.set_index(["model", "repeat", "bandwidth"])["outcome"]
    scenarios = scenarios.join(keyed, on=["model", "repeat", "bandwidth"])
    counts = pd.crosstab([scenarios["model"], scenarios["bandwidth"]], scenarios["outcome"].fillna("not raced"))
    rounds = int(raced["race_rounds"].max()) if len(raced) else 0
    print(f"races of the chosen split against the fastest other split measured ({rounds} alternating real runs each, "
          f"sign test at p < {RACE_ALPHA}), scenarios by outcome:")
    print(counts.to_string())
    total = scenarios["outcome"].value_counts()
    confirmed, refuted, undecided = (int(total.get(k, 0)) for k in ("confirmed", "refuted", "undecided"))
    decided = confirmed + refuted
    print(f"chosen split confirmed faster by its race in {confirmed} of {len(scenarios)} scenarios "
          f"({confirmed / len(scenarios):.0%}; undecided counted as misses), refuted in {refuted}, undecided in "
          f"{undecided}; confirmed in {f'{confirmed / decided:.0%}' if decided else 'n/a'} of the {decided} decided")
    mixed = pd.crosstab(scenarios["match"].map({True: "single runs: match", False: "single runs: miss"}),
                        scenarios["outcome"].fillna("not raced"))
    print(mixed.to_string())


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The sides, link and timing budgets of the real runs (shared with split_tie.py)."""
    parser.add_argument("--device", default="onnxruntime/t1/opt-disable@1")
    parser.add_argument("--server", default="onnxruntime/t1@0")
    parser.add_argument("--rtt", default="0ms")
    parser.add_argument("--part-budget", type=float, default=0.5, help="seconds of timing per part at most")
    parser.add_argument("--run-budget", type=float, default=0.75, help="seconds of latency timing per real run")
    parser.add_argument("--stream-seconds", type=float, default=0.5, help="seconds of stream per real run")


def protocols(args: argparse.Namespace) -> dict:
    """The part and real-run protocols of `add_run_options`' budgets, as SplitSession and analyze_split take them."""
    return {"protocol": replace(PART_PROTOCOL, time_budget_s=args.part_budget),
            "run_protocol": replace(RUN_PROTOCOL, time_budget_s=args.run_budget)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder of per-unit CSVs (resumed when it exists)")
    parser.add_argument("--models", default=f"{NB201},resnet:18,{FBNET}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=8.0, help="start no unit expected to end after this")
    parser.add_argument("--bandwidth", default="10Mbps,100Mbps,1Gbps")
    add_run_options(parser)
    parser.add_argument("--race-rounds", type=int, default=0, help="race each chosen split against the fastest "
                        "other measured one, this many alternating real runs each (0: no race)")
    parser.add_argument("--stages", type=int, default=2, help="stages per plan (device + servers)")
    parser.add_argument("--cuts", type=int, default=0, help="plans over this many evenly spaced cut points (0: all)")
    parser.add_argument("--batch", type=int, default=1, help="samples per input (see hwlat split --batch)")
    parser.add_argument("--tvm-records", help="MetaSchedule work_dir for every tvm side (see hwlat split --tvm-records)")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args()
    if args.race_rounds < 0:
        parser.error(f"--race-rounds must be >= 0, got {args.race_rounds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    servers = [parse_side(text) for text in args.server.split(",")]
    sides = [parse_side(args.device), *(servers + servers[-1:] * args.stages)[:args.stages - 1]]
    if args.tvm_records:
        try:
            sides = with_tvm_records(sides, args.tvm_records)
        except HwlatError as exc:
            parser.error(str(exc))
    models = args.models.split(",")
    start = time.time()
    units = [(repeat, number, model) for repeat in range(args.repeats if not args.summary_only else 0)
             for number, model in enumerate(models)]
    for repeat, number, model in units:
        path = out / f"unit-{number}-{repeat}.csv"
        if path.exists():
            continue
        done = [pd.read_csv(p) for p in out.glob(f"unit-{number}-*.csv")]
        expected = max((d["unit_seconds"].iloc[0] for d in done), default=300.0)
        if time.time() - start + expected > args.minutes * 60:
            break  # units run in order (every model once per repeat): the next invocation starts here
        table = run_unit(model, repeat, args, sides)
        table.to_csv(path.with_suffix(".tmp"), index=False)
        os.replace(path.with_suffix(".tmp"), path)
        print(f"unit {short_name(model)} #{repeat}: {table['unit_seconds'].iloc[0]:.0f} s, other jobs "
              f"{table['unit_other_cores_busy'].iloc[0]:.2f} cores busy", flush=True)
    saved = sorted(out.glob("unit-*.csv"))
    if not saved:
        print("no unit saved yet")
        return
    print(f"sides: device {sides[0].spec}, servers {', '.join(s.spec for s in sides[1:])}; rtt {args.rtt}; "
          f"batch {args.batch}; tvm records {args.tvm_records or 'none'}; "
          f"cpus: {os.cpu_count()}; {len(saved)} units in {out}")
    report(pd.concat([pd.read_csv(p) for p in saved], ignore_index=True))


if __name__ == "__main__":
    main()
