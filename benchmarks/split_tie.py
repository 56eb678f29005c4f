"""Is a close call a real tie? Two split plans, predicted and run for real again and again, counted by who wins.

Each round opens a fresh session (new stage processes, every part measured anew, as a unit of
`split_points.py` does), predicts both plans, then runs both for real, one after the other in alternating order.
It prints how often each plan is predicted faster and measured faster, the paired measured ratio, and a sign test
of the measured wins. When both plans win a sizeable share of rounds, the scenario's "measured best" is not
stable, and a strict match with it is a coin flip for any predictor.

Usage: python benchmarks/split_tie.py [--model resnet:18] [--bandwidth 1Gbps] [--plans device-only,server-only]
       [--rounds 10] [--device ...] [--server ...] [--rtt 0ms]
A plan is device-only, server-only, or the node after which the device hands over (as `hwlat split` names cuts).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from hwlat._errors import HwlatError
from hwlat.split import Link, Plan, SplitSession, parse_bandwidth, parse_duration_ms, parse_side
from hwlat.split._execute import compared_parts
from split_points import add_run_options, protocols  # this folder is on sys.path when run as a script


def plan_for(session: SplitSession, name: str) -> Plan:
    """The 2-stage plan called `name`: device-only, server-only, or the cut after a named node."""
    if name == "device-only":
        return Plan((len(session.cuts) - 1,))
    if name == "server-only":
        return Plan((0,))
    return session.plan_after(name)


def one_round(args, sides, link: Link, order: list[str]) -> list[dict]:
    """Predict both plans in a fresh session, then run them for real in `order`."""
    with SplitSession(args.model, sides, **protocols(args)) as session:
        plans = {name: plan_for(session, name) for name in order}
        predicted = {name: session.evaluate(plan, link) for name, plan in plans.items()}
        rows = []
        for name in order:
            measured = session.verify(plans[name], link, predicted[name], args.stream_seconds)
            parts = {f"{part}_ms": predicted[name][f"{part}_ms"]
                     for part in compared_parts([*predicted[name], *measured])}
            rows.append({"plan": name, "label": session.label(plans[name]),
                         "predicted_ms": predicted[name]["latency_ms"], **measured, **parts})
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet:18")
    parser.add_argument("--bandwidth", default="1Gbps")
    parser.add_argument("--plans", default="device-only,server-only", help="two plans, comma-separated")
    parser.add_argument("--rounds", type=int, default=10)
    add_run_options(parser)
    args = parser.parse_args()
    names = [name.strip() for name in args.plans.split(",") if name.strip()]
    if len(names) != 2 or names[0] == names[1]:
        parser.error(f"--plans needs two different plans, got {args.plans!r}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    rows = []
    try:  # a bad side, bandwidth, model or plan name is a one-line error
        sides = [parse_side(args.device), parse_side(args.server)]
        link = Link(parse_bandwidth(args.bandwidth), parse_duration_ms(args.rtt))
        for index in range(args.rounds):
            order = names if index % 2 == 0 else names[::-1]
            started = time.strftime("%H:%M:%S")
            rows += [row | {"round": index, "started": started} for row in one_round(args, sides, link, order)]
            print(f"round {index + 1}/{args.rounds} done ({started})", flush=True)
    except HwlatError as exc:
        parser.error(str(exc))
    table = pd.DataFrame(rows)
    wide = table.pivot(index="round", columns="plan", values=["predicted_ms", "measured_latency_ms"])
    first, second = names
    rounds = pd.DataFrame({
        "started": table.groupby("round")["started"].first(),
        f"pred {first}": wide[("predicted_ms", first)], f"pred {second}": wide[("predicted_ms", second)],
        f"meas {first}": wide[("measured_latency_ms", first)], f"meas {second}": wide[("measured_latency_ms", second)],
    })
    rounds["predicted ratio"] = rounds[f"pred {first}"] / rounds[f"pred {second}"]
    rounds["measured ratio"] = rounds[f"meas {first}"] / rounds[f"meas {second}"]
    rounds["match"] = (rounds["predicted ratio"] < 1) == (rounds["measured ratio"] < 1)
    labels = table.drop_duplicates("plan").set_index("plan")["label"]
    print(f"model {args.model}, {args.bandwidth}, rtt {args.rtt}; device {args.device}, server {args.server}")
    print("; ".join(f"{name} = {labels[name]}" for name in names))
    with pd.option_context("display.width", 200):
        print(rounds.to_string(float_format="%.3f"))
    wins = int((rounds["measured ratio"] < 1).sum())
    predicted_wins = int((rounds["predicted ratio"] < 1).sum())
    ratio = rounds["measured ratio"]
    print(f"measured faster: {first} in {wins} of {len(rounds)} rounds, {second} in {len(rounds) - wins} "
          f"(sign test p = {binomtest(wins, len(rounds)).pvalue:.3f}); predicted faster: {first} in "
          f"{predicted_wins} of {len(rounds)}")
    print(f"measured {first} / {second}: median {ratio.median():.3f}, range {ratio.min():.3f}-{ratio.max():.3f}; "
          f"predicted: median {rounds['predicted ratio'].median():.3f}, range "
          f"{rounds['predicted ratio'].min():.3f}-{rounds['predicted ratio'].max():.3f}")
    for name in names:
        runs = table[table["plan"] == name]
        gaps = {part: runs[f"measured_{part}_ms"] - runs[f"{part}_ms"] for part in compared_parts(runs.columns)}
        print(f"{name}, measured - predicted per part (median ms, rounds positive): " + ", ".join(
            f"{part} {gap.median():+.3f} ({int((gap > 0).sum())}/{gap.count()})" for part, gap in gaps.items()
            if gap.count()))
    error = np.median(np.abs(table["predicted_ms"] / table["measured_latency_ms"] - 1))
    print(f"predicted order = measured order in {rounds['match'].mean():.0%} of rounds; "
          f"median |predicted / measured - 1| {error:.3f}")


if __name__ == "__main__":
    main()
