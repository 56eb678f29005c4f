"""Segments timed as one, or summed from blocks (`hwlat split --segment-times blocks`): accuracy against real runs.

One session per model (the benchmark's sides, 2 stages, every cut): each plan is predicted twice from the same
measured parts, with each segment timed as one ("segments", the default) and as the sum of the blocks between
consecutive cuts, each timed once ("blocks", per-layer prediction as in Neurosurgeon), then run once for real per
bandwidth. Prints, per model: how many segment timings each mode made (blocks first, then what segments mode adds),
how far a segment's block sum is from its own timing (back to back), and per mode the median |predicted / measured - 1| and whether the plan
predicted best is the one measured best (regret: the chosen plan's measured latency over the best's - 1), per
bandwidth.

Usage: python benchmarks/split_blocks.py [--models nb201:...,resnet:18] [--bandwidth 10Mbps,100Mbps,1Gbps] [--out CSV]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from hwlat._errors import HwlatError
from hwlat.split import Link, SplitSession, parse_bandwidths, parse_duration_ms, parse_side
from split_points import NB201, add_run_options, protocols, short_name  # this folder is on sys.path as a script

MODES = ("segments", "blocks")


def run_model(model: str, args, sides) -> tuple[pd.DataFrame, dict]:
    """Every plan of `model` predicted in both modes (blocks first, then segments, counting the timings each adds)
    and run once for real per bandwidth."""
    rows, added = [], {}
    with SplitSession(model, sides, **protocols(args)) as session:
        plans, last = session.all_plans(), len(session.cuts) - 1
        links = [Link(bandwidth, parse_duration_ms(args.rtt)) for bandwidth in parse_bandwidths(args.bandwidth)]
        predicted = {}
        for mode in ("blocks", "segments"):
            before = sum(key[0] == "segment" for key in session._parts)
            session.segment_times = mode
            predicted[mode] = {(link, plan): session.evaluate(plan, link) for link in links for plan in plans}
            added[mode] = sum(key[0] == "segment" for key in session._parts) - before
        for link in links:
            for plan in plans:
                measured = session.verify(plan, link, predicted["segments"][link, plan], args.stream_seconds)
                rows.append({"model": short_name(model), "bandwidth": link.bandwidth_bps, "plan": session.label(plan),
                             **{f"{mode}_ms": predicted[mode][link, plan]["latency_ms"] for mode in MODES},
                             "measured_ms": measured["measured_latency_ms"]})
        sums = []
        for stage, bounds in ((0, [(0, c) for c in range(2, last + 1)]), (1, [(c, last) for c in range(last - 1)])):
            for a, b in bounds:
                blocks = sum(session._timed_segment(stage, p, p + 1) for p in range(a, b))
                sums.append(blocks / session._timed_segment(stage, a, b) - 1)
    errors = pd.Series(sums)
    counts = {"timings_blocks": added["blocks"], "timings_segments_added": added["segments"],
              "block_sum_error_median": float(errors.abs().median()), "block_sum_error_signed_median":
              float(errors.median()), "block_sum_error_max": float(errors.abs().max()), "segments_compared": len(sums)}
    return pd.DataFrame(rows), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"{NB201},resnet:18")
    parser.add_argument("--bandwidth", default="10Mbps,100Mbps,1Gbps")
    parser.add_argument("--out", help="CSV of every plan's predictions (both modes) and real run")
    add_run_options(parser)
    args = parser.parse_args()
    tables = []
    try:
        sides = [parse_side(args.device), parse_side(args.server)]
        for model in args.models.split(","):
            started = time.strftime("%H:%M:%S")
            table, counts = run_model(model, args, sides)
            tables.append(table)
            if args.out:
                pd.concat(tables).to_csv(args.out, index=False)
            print(f"\n{short_name(model)} (started {started}): {len(table)} real runs; segment timings (per side and "
                  f"idle time) made for blocks mode {counts['timings_blocks']}, added for segments mode "
                  f"{counts['timings_segments_added']}")
            print(f"block sum / segment - 1 over {counts['segments_compared']} segments (back to back): median |.| "
                  f"{counts['block_sum_error_median']:.3f}, signed median "
                  f"{counts['block_sum_error_signed_median']:+.3f}, max |.| {counts['block_sum_error_max']:.3f}")
            for mode in MODES:
                table[f"{mode}_error"] = (table[f"{mode}_ms"] / table["measured_ms"] - 1).abs()
            summary = []
            for bandwidth, group in table.groupby("bandwidth"):
                best = group.loc[group["measured_ms"].idxmin(), "plan"]
                summary.append({"bandwidth": f"{bandwidth / 1e6:g}Mbps", "measured best": best,
                                **{f"{mode}: median |error|": round(group[f"{mode}_error"].median(), 3)
                                   for mode in MODES},
                                **{f"{mode}: regret": round(group.loc[group[f"{mode}_ms"].idxmin(), "measured_ms"]
                                                            / group["measured_ms"].min() - 1, 3) for mode in MODES},
                                **{f"{mode}: chosen": group.loc[group[f"{mode}_ms"].idxmin(), "plan"]
                                   for mode in MODES}})
            print(pd.DataFrame(summary).to_string(index=False))
            print("all bandwidths: median |error| " + ", ".join(f"{mode} {table[f'{mode}_error'].median():.3f}"
                                                               for mode in MODES))
    except HwlatError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
