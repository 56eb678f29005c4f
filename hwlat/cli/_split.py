"""`hwlat split`: where to cut a network between a device and servers, per bandwidth, optionally run for real."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from hwlat._errors import HwlatError


def split(
    model: str = typer.Option(..., help="nb201:ARCH (or any space SPACE:ARCH), resnet:18|34, or onnx:PATH."),
    device: str = typer.Option("onnxruntime/t1/opt-disable@1", help="First stage: onnxruntime/tTHREADS, then optionally /opt-LEVEL "
                          "and @CPUS; or tvm/tTHREADS, then optionally @CPUS (TVM's untuned build) or @DEVICE, a "
                          "remote board registered with hwlat devices add (segments timed there; predicted only)."),
    server: str = typer.Option("onnxruntime/t1@0", help="Later stages, comma-separated; the last is repeated up to --stages."),
    tvm_records: str = typer.Option(None, help="MetaSchedule work_dir (e.g. from hwlat tvm-tune) whose tuning records "
                                    "every tvm side applies to the segments it compiles."),
    bandwidth: str = typer.Option("10Mbps,100Mbps,1Gbps", help="Link bandwidths to sweep, comma-separated; one "
                                  "rate per link with '/': device->s1/s1->s2/... (--stages - 1 rates: the return "
                                  "to the device at the first rate) or .../return (--stages rates)."),
    rtt: str = typer.Option("0ms", help="Round-trip time of every link (each message is delayed by half), or one "
                            "per link with '/', counted like the link rates, e.g. 20ms/1ms."),
    stages: int = typer.Option(2, help="Number of stages (device + servers); 3+ are searched with Optuna when many."),
    compression: str = typer.Option("none", help="Crossing tensors as sent: none, fp16 or int8."),
    max_tensors: int = typer.Option(1, help="Cut only where at most this many tensors cross."),
    batch: int = typer.Option(1, help="Samples per input (the model's dynamic batch dimension): latency, bytes and "
                              "energy per batch, throughput in batches per second."),
    cut: str = typer.Option(None, help="Evaluate only these cut points, comma-separated: node names, or the tensor "
                            "crossing, as --list-cuts shows them ('input' = all on the server)."),
    segment_times: str = typer.Option("segments", help="segments: time every segment a plan uses (most accurate); "
                                      "blocks: time each block between consecutive cut points once and add them up "
                                      "(per-layer prediction: one timing per block and side instead of one per "
                                      "segment, for many stages or cuts)."),
    list_cuts: bool = typer.Option(False, "--list-cuts", help="Print the valid cut points and exit."),
    verify: bool = typer.Option(False, "--verify", help="Run the front (with --cut: every listed cut) for real over TCP."),
    verify_all: bool = typer.Option(False, "--verify-all", help="Run every evaluated split for real."),
    race: int = typer.Option(0, help="For each close call, run the chosen split and its rival (the runner-up; when "
                             "every split was run, the fastest other one measured) for real this many times each, "
                             "alternately, and test which is faster (sign test)."),
    trials: int = typer.Option(60, help="Optuna trials per bandwidth when plans are too many to enumerate."),
    enumerate_limit: int = typer.Option(100, help="Enumerate all plans when there are at most this many."),
    time_budget: float = typer.Option(0.5, help="Seconds of timing per measured part (segment, codec) at most."),
    run_budget: float = typer.Option(1.5, help="Seconds of latency timing per real run at most (then a stream of "
                                     "the same length for throughput)."),
    device_power: str = typer.Option(None, help="Predict the device's energy per input from its power: "
                                     "compute=W,idle=W[,tx=W,rx=W] (tx/rx default to idle), or 'measure' (idle and "
                                     "compute power read from --energy-meter); energy then joins the front."),
    energy_meter: str = typer.Option(None, help="Measure device energy per input in real runs with a power reading: "
                                     "auto, powercap:ZONE_DIR, energy:FILE (cumulative uJ) or power:FILE (uW)."),
    report: str = typer.Option(None, help="Write PREFIX-<bandwidth>.html/.csv/.json fronts (per-link rates: '/' as "
                                "'_') and PREFIX.csv/.json."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Rank split points of a model by end-to-end latency and throughput for each bandwidth (or per-link rates)."""
    from dataclasses import replace

    from hwlat.devices import find_energy_meter
    from hwlat.split import (
        analyze_split,
        parse_device_power,
        parse_networks,
        parse_rtts,
        parse_side,
    )
    from hwlat.split._api import CLOSE_CALL, PART_PROTOCOL, RUN_PROTOCOL, check_report_prefix

    if batch < 1:
        raise HwlatError(f"--batch must be >= 1, got {batch}")
    if list_cuts:
        _print_cuts(model, compression, max_tensors, batch, as_json)
        return
    if stages < 2:
        raise HwlatError(f"--stages must be >= 2 (a device and a server), got {stages}")
    names = None if cut is None else [name.strip() for name in cut.split(",") if name.strip()]
    if names is not None and not names:
        raise HwlatError("--cut needs at least one node or tensor name (see --list-cuts)")
    if report:
        check_report_prefix(report)
    rtt_ms = parse_rtts(rtt)
    networks = parse_networks(bandwidth, stages, rtt_ms)
    servers = [parse_side(text) for text in server.split(",") if text.strip()]
    if not servers:
        raise HwlatError("--server needs at least one side, e.g. onnxruntime/t1@0")
    if len(servers) > stages - 1:
        raise HwlatError(f"--server lists {len(servers)} sides but --stages {stages} has {stages - 1} server stages")
    sides = [parse_side(device), *servers, *[servers[-1]] * (stages - 1 - len(servers))]
    if tvm_records is not None:
        from hwlat.split._sides import with_tvm_records

        sides = with_tvm_records(sides, tvm_records)
    measure_power = device_power is not None and device_power.strip() == "measure"
    power = None if device_power is None else "measure" if measure_power else parse_device_power(device_power)
    meter = find_energy_meter(energy_meter or "auto") if energy_meter or measure_power else None
    console = Console(stderr=True, quiet=as_json)
    result = analyze_split(model, sides, networks, rtt_ms=rtt_ms, compression=compression,
                           max_tensors=max_tensors, cuts=names, race_rounds=race, device_power=power,
                           energy_meter=meter, batch_size=batch, segment_times=segment_times,
                           verify="all" if verify_all or (verify and names) else "front" if verify else "none",
                           trials=trials, enumerate_limit=enumerate_limit,
                           protocol=replace(PART_PROTOCOL, time_budget_s=time_budget),
                           run_protocol=replace(RUN_PROTOCOL, time_budget_s=run_budget), stream_seconds=run_budget,
                           on_plan=lambda plan, row: console.log(f"{row['bandwidth']} {plan}: predicted "
                                                                 f"{row['latency_ms']:.2f} ms, measured "
                                                                 f"{row['measured_latency_ms']:.2f} ms"))
    paths = [str(p) for p in result.report(report)] if report else []
    table = result.table
    if as_json:
        front = table[table["on_front"]]
        typer.echo(json.dumps({"settings": result.settings, "cut_points": len(result.cuts),
                               "chosen": json.loads(result.chosen().to_json(orient="records")),
                               "front": json.loads(front.to_json(orient="records")),
                               "plans": json.loads(table.to_json(orient="records")), "report": paths}))
        return
    headers = {"plan": "plan", "latency_ms": "latency ms", "throughput_per_s": "per s", "bytes": "bytes",
               "bottleneck": "bottleneck", "device_energy_mj": "device mJ", "measured_latency_ms": "measured ms",
               "measured_throughput_per_s": "measured /s", "measured_device_energy_mj": "measured mJ"}
    columns = [c for c in headers if c in table]
    out = Console()
    for name, rows in table.groupby("bandwidth", sort=False):
        shown = rows if names else rows[rows["on_front"]]
        view = Table(title=f"{name}: {'the listed cuts' if names else 'Pareto front'} (* lowest predicted latency)")
        for column in columns:
            view.add_column(headers[column], no_wrap=column == "plan")
        for _, row in shown.sort_values("latency_ms").iterrows():
            cells = [("* " if row["best_latency"] else "") + row["plan"]]
            cells += [f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns[1:]]
            view.add_row(*cells)
        out.print(view)
    measured = table.set_index(["bandwidth", "plan"]).get("measured_latency_ms")
    for _, choice in result.chosen().iterrows():
        if parts := _parts_line(choice):
            out.print(f"{choice['bandwidth']}, where the chosen {choice['plan']} spends its time "
                      f"(ms predicted / measured): {parts}")
        if not choice["close_call"]:
            continue
        pair = [(choice["bandwidth"], choice[key]) for key in ("plan", "runner_up")]
        runs = [] if measured is None else [float(measured[key]) for key in pair if key in measured.index]
        verdict = _race_verdict(choice) or (
            f"measured once {runs[0]:.2f} ms (chosen) and {runs[1]:.2f} ms (runner-up); --race N orders them "
            "beyond the run-to-run spread" if len(runs) == 2 and all(r == r for r in runs)
            else "only real runs of both can order them (--race N)")
        out.print(f"[yellow]close call[/yellow] at {choice['bandwidth']}: {choice['runner_up']} is predicted only "
                  f"{choice['runner_up_margin']:.1%} slower than the chosen {choice['plan']} (under {CLOSE_CALL:.0%},"
                  f" about the 90th percentile of prediction error measured here); {verdict}")
    out.print(f"{len(result.cuts)} cut points; sides: {result.settings['sides']}")
    if result.settings.get("device_power"):
        out.print(f"device power (W): {result.settings['device_power']}; "
                  f"energy meter: {result.settings.get('energy_meter')}")
    for path in paths:
        out.print(f"wrote {path}")


def _parts_line(row) -> str:
    """A plan's latency parts, predicted / measured ms (`SplitSession.verify`), e.g. ``device 3.77 / 3.75, ...``;
    empty when it was not run for real."""
    from hwlat.split._execute import compared_parts

    parts = [part for part in compared_parts(row.index) if row[f"measured_{part}_ms"] == row[f"measured_{part}_ms"]]
    return ", ".join(f"{part.replace('_to_', '->')} {row[part + '_ms']:.3g} / {row[f'measured_{part}_ms']:.3g}"
                     for part in parts)


def _race_verdict(choice) -> str | None:
    """What a race of the chosen split and its rival found (None when they were not raced)."""
    rounds = choice.get("race_rounds")
    if rounds is None or rounds != rounds:
        return None
    rounds, wins, p_value = int(rounds), int(choice["race_first_wins"]), float(choice["race_p_value"])
    rival = choice["race_rival"]
    raced = f"raced against {rival} {rounds} times (alternating real runs)"
    ratio = f"median chosen / rival {choice['race_median_ratio']:.3f}"
    if choice["race_faster"] != "neither":
        winner, count = ("the chosen split", wins) if choice["race_faster"] == "first" else (rival, rounds - wins)
        return f"{raced}: {winner} was faster in {count} of {rounds} (sign test p = {p_value:.3f}; {ratio})"
    return (f"{raced}: the chosen split was faster in {wins} of {rounds} (sign test p = {p_value:.2f}; {ratio}): "
            f"no difference shown in {rounds} runs each")


def _print_cuts(model: str, compression: str, max_tensors: int, batch: int, as_json: bool) -> None:
    """The valid cut points of `model`: the node each follows, the tensors crossing, their bytes as sent."""
    from hwlat.split import find_cuts, resolve_model, static_shapes
    from hwlat.split._cuts import check_compression

    check_compression(compression)
    cuts = find_cuts(static_shapes(resolve_model(model).load(), batch), max_tensors)
    rows = [{"index": c.index, "after": c.after, "tensors": list(c.tensors), "shapes": [list(s) for s in c.shapes],
             "bytes": c.compressed_bytes(compression)} for c in cuts]
    if as_json:
        typer.echo(json.dumps({"model": model, "compression": compression, "batch_size": batch, "cuts": rows}))
        return
    view = Table(title=f"{len(cuts)} cut points of {model} (use the 'after' name with --cut)")
    for column in ("index", "after", "tensors", "shapes", "bytes"):
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(str(row["index"]), row["after"], ", ".join(row["tensors"]),
                     ", ".join("x".join(map(str, s)) for s in row["shapes"]), str(row["bytes"]))
    Console().print(view)
