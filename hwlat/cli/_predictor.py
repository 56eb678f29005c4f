"""`hwlat predictor`: evaluate latency predictors under HELP's protocol, train, adapt and predict."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset, load_dataset
from hwlat.predictors import (HELP_SPLITS, PROTOCOLS, SELECTIONS, BasePredictor, evaluate as run_evaluation,
                              make_predictor, predictor_kinds)

app = typer.Typer(no_args_is_help=True, help="Latency predictors: evaluate, train, adapt, select, predict.")

_DATA_HELP = ("HELP data folder (or a space folder inside it), or a measurement table (.csv/.parquet); "
              "repeat to merge several (devices of all, archs of all).")
_KIND_HELP = "Predictor: {}.".format(", ".join(predictor_kinds()))


def _load(paths: list[Path], space: str) -> LatencyDataset:
    """The datasets at `paths`, merged in order."""
    dataset = load_dataset(paths[0], space)
    for path in paths[1:]:
        dataset = dataset.merge(load_dataset(path, space))
    return dataset


def _train_devices(dataset: LatencyDataset, listed: str | None) -> list[str]:
    """Devices named in `listed` (comma-separated), else HELP's meta-train devices present in `dataset`."""
    if listed:
        devices = [d.strip() for d in listed.split(",") if d.strip()]
        for device in devices:
            dataset[device]  # HwlatError naming the known devices
        return devices
    devices = [d for d in HELP_SPLITS.get(dataset.space, {}).get("meta_train", ()) if d in dataset.latency]
    if not devices:
        raise HwlatError("no HELP meta-train device in the data; name the source devices with --train-devices")
    return devices


@app.command()
def evaluate(
    data: list[Path] = typer.Option(..., "--data", help=_DATA_HELP),
    space: str = typer.Option(..., "--space", help="nb201, fbnet or ofa."),
    target: str = typer.Option(..., "--target", help="Device to predict; never used for training."),
    samples: int = typer.Option(10, "--samples", help="Random target samples (help: beside the references; "
                                "0 is the strict protocol)."),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds (0..n-1) for the target samples."),
    train_devices: str = typer.Option(None, "--train-devices", help="Comma-separated source devices "
                                      "(default: HELP's meta-train devices present in the data)."),
    kind: str = typer.Option("hwlat", "--predictor", help=_KIND_HELP),
    protocol: str = typer.Option("help", "--protocol", help=f"One of {', '.join(PROTOCOLS)}: HELP's pools and "
                                 "references, or random target samples scored on all its other measured archs."),
    select: str = typer.Option("random", "--select", help=f"One of {', '.join(SELECTIONS)}: the samples beside "
                               "the references drawn at random from the trimmed training pool, or chosen by the "
                               "predictor from the training pool (same budget; the same rows for every seed)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Spearman's rho of a predictor on a device it never trained on, mean and std over seeds."""
    dataset = _load(data, space)
    devices = _train_devices(dataset, train_devices)
    result = run_evaluation(make_predictor(kind), dataset, target, devices, samples=samples, seeds=seeds,
                            protocol=protocol, select=select)
    if as_json:
        typer.echo(json.dumps({"predictor": kind, "space": dataset.space, "protocol": protocol,
                               "train_devices": devices, **result.to_dict()}))
        return
    typer.echo(f"{kind} on {target} ({dataset.space}, {result.measured} target latencies, {select} samples, "
               f"{seeds} seeds): "
               f"spearman {result.spearman_mean:.4f} ± {result.spearman_std:.4f}, "
               f"MAPE {100 * sum(result.mape) / seeds:.1f} %, within ±10 % {100 * sum(result.within10) / seeds:.1f} %")


@app.command()
def train(
    data: list[Path] = typer.Option(..., "--data", help=_DATA_HELP),
    space: str = typer.Option(..., "--space", help="nb201, fbnet or ofa."),
    out: Path = typer.Option(..., "--out", help="Predictor file to write (.npz)."),
    train_devices: str = typer.Option(None, "--train-devices", help="Comma-separated source devices "
                                      "(default: HELP's meta-train devices present in the data)."),
    kind: str = typer.Option("hwlat", "--predictor", help=_KIND_HELP),
) -> None:
    """Fit a predictor on everything the source devices measured and save it."""
    dataset = _load(data, space)
    devices = _train_devices(dataset, train_devices)
    make_predictor(kind).fit(dataset.subset(devices)).save(out)
    typer.echo(f"{kind} predictor trained on {len(devices)} devices written to {out}")


@app.command()
def adapt(
    model: Path = typer.Option(..., "--model", help="Predictor file from `train`."),
    samples: Path = typer.Option(..., "--samples", help="CSV with columns arch, latency_ms (the target's)."),
    out: Path = typer.Option(..., "--out", help="Adapted predictor file to write."),
) -> None:
    """Adapt a saved predictor to a new device from a CSV of its measured latencies."""
    table = _read_table(samples, ("arch", "latency_ms"))
    BasePredictor.load(model).adapt(table["arch"].tolist(), table["latency_ms"].to_numpy(float)).save(out)
    typer.echo(f"adapted to {len(table)} latencies; written to {out}")


@app.command()
def select(
    model: Path = typer.Option(..., "--model", help="Predictor file adapted to the target (e.g. on its reference "
                               "archs)."),
    archs: Path = typer.Option(..., "--archs", help="Text file with one candidate arch string per line."),
    count: int = typer.Option(10, "--count", help="How many archs to choose."),
) -> None:
    """Which candidate archs the target should measure next (active selection), one per line."""
    names = _read_archs(archs)
    for i in BasePredictor.load(model).select(names, count):
        typer.echo(names[i])


@app.command()
def predict(
    model: Path = typer.Option(..., "--model", help="Adapted predictor file."),
    archs: Path = typer.Option(..., "--archs", help="Text file with one arch string per line."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {arch, latency_ms[, std_ms]}."),
) -> None:
    """Predicted latency in ms of each arch on the adapted device."""
    names = _read_archs(archs)
    predictor = BasePredictor.load(model)
    try:
        mean, std = predictor.predict(names, return_std=True)
    except HwlatError:
        mean, std = predictor.predict(names), None
    rows = [{"arch": a, "latency_ms": float(m), **({"std_ms": float(std[i])} if std is not None else {})}
            for i, (a, m) in enumerate(zip(names, mean))]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['latency_ms']:.4f}\t{row['arch']}")


def _read_archs(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file."""
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as error:
        raise HwlatError(f"{path}: cannot read ({error.strerror})") from None


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise HwlatError(f"{path}: cannot read CSV ({error})") from None
    missing = set(columns) - set(table.columns)
    if missing:
        raise HwlatError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return table
