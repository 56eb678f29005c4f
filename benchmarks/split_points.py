"""Split points, predicted against real runs: latency error per split and whether the predicted best is best.

For each model and bandwidth (a scenario) every 2-stage split is predicted from parts measured in the stage
processes, then run for real (device and server processes over rate-limited loopback TCP). Prints per
scenario the median and 90th percentile of |predicted / measured - 1| of end-to-end latency over the splits,
whether the split with the lowest predicted latency has the lowest measured latency (and its regret, the
extra measured latency over the measured best), the same for throughput, and the machine's load average.
Usage: python benchmarks/split_points.py [--models nb201:ARCH,resnet:18] [--bandwidth 10Mbps,100Mbps,1Gbps]
       [--device onnxruntime/t1/opt-disable@1] [--server onnxruntime/t1@0] [--rtt 0ms] [--out results.csv]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd

from hwlat.split import analyze_split, parse_bandwidths, parse_duration_ms, parse_side

NB201 = "nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"


def summarize(table: pd.DataFrame) -> dict:
    """Error and choice figures of one scenario (one model at one bandwidth)."""
    error = (table["latency_ms"] / table["measured_latency_ms"] - 1).abs()
    best = table.loc[table["measured_latency_ms"].idxmin()]
    chosen = table.loc[table["latency_ms"].idxmin()]
    fast = table.loc[table["measured_throughput_per_s"].idxmax()]
    picked = table.loc[table["throughput_per_s"].idxmax()]
    throughput_error = (table["throughput_per_s"] / table["measured_throughput_per_s"] - 1).abs()
    return {"splits": len(table), "median_abs_error": float(error.median()), "p90_abs_error": float(error.quantile(0.9)),
            "within_5pct": float((error <= 0.05).mean()), "best_matches": bool(chosen["plan"] == best["plan"]),
            "regret": float(chosen["measured_latency_ms"] / best["measured_latency_ms"] - 1),
            "chosen": chosen["plan"], "measured_best": best["plan"],
            "throughput_median_abs_error": float(throughput_error.median()),
            "throughput_best_matches": bool(picked["plan"] == fast["plan"]),
            "throughput_regret": float(1 - picked["measured_throughput_per_s"] / fast["measured_throughput_per_s"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"{NB201},resnet:18")
    parser.add_argument("--bandwidth", default="10Mbps,100Mbps,1Gbps")
    parser.add_argument("--device", default="onnxruntime/t1/opt-disable@1")
    parser.add_argument("--server", default="onnxruntime/t1@0")
    parser.add_argument("--rtt", default="0ms")
    parser.add_argument("--out", default=None, help="CSV of every split of every scenario")
    args = parser.parse_args()
    sides = [parse_side(args.device), parse_side(args.server)]
    rows, tables = [], []
    for model in args.models.split(","):
        load_before = os.getloadavg()[0]
        result = analyze_split(model, sides, parse_bandwidths(args.bandwidth), rtt_ms=parse_duration_ms(args.rtt),
                               verify="all")
        load_after = os.getloadavg()[0]
        short = model if len(model) < 30 else model.split(":")[0]
        for bandwidth, table in result.table.groupby("bandwidth", sort=False):
            rows.append({"model": short, "bandwidth": bandwidth, **summarize(table),
                         "load_1min": f"{load_before:.1f}-{load_after:.1f}"})
        tables.append(result.table.assign(model=model))
    summary = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
        print(summary.drop(columns=["chosen", "measured_best"]).to_string(index=False, float_format="%.3f"))
        print(summary[["model", "bandwidth", "chosen", "measured_best"]].to_string(index=False))
    every = pd.concat(tables, ignore_index=True)
    error = (every["latency_ms"] / every["measured_latency_ms"] - 1).abs()
    print(f"sides: device {sides[0].spec}, server {sides[1].spec}; rtt {args.rtt}; cpus on this machine: "
          f"{os.cpu_count()}")
    print(f"all splits: median |latency error| {error.median():.3f} (goal <= 0.05), "
          f"{(error <= 0.05).mean():.0%} of {len(every)} splits within 5 %")
    print(f"predicted best latency = measured best in {summary['best_matches'].mean():.0%} of {len(summary)} "
          f"scenarios (goal >= 95 %); median regret {np.median(summary['regret']):.3f}")
    print(f"predicted best throughput = measured best in {summary['throughput_best_matches'].mean():.0%}; "
          f"median |throughput error| {summary['throughput_median_abs_error'].median():.3f}")
    if args.out:
        every.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
