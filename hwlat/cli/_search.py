"""`hwlat search` (adapt a predictor on a device, search under a latency budget, check) and `hwlat report`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hwlat._errors import HwlatError


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=console, transient=quiet,
                    disable=quiet)


def _truth(space: str, device: str, latency_data: Path | None, store: str | None, runtime: str, threads: int,
           time_budget: float, progress: Progress):
    """The device's latency: looked up in `latency_data` when given, else measured on it (stored, resumable)."""
    from hwlat.search import LatencyLookup

    if latency_data is not None:
        from hwlat.datasets import load_dataset

        return LatencyLookup(load_dataset(latency_data, space), device)
    from hwlat.profilers import MeasurementProtocol
    from hwlat.search._measured import MeasuredLatency
    from hwlat.store import MeasurementStore

    task = progress.add_task(f"measure on {device}", total=None, last="")

    def on_item(arch: str, answer: dict) -> None:
        last = f"{answer['stats']['median_ms']:.3f} ms" if "stats" in answer else "[red]failed"
        progress.update(task, advance=1, last=last)

    return MeasuredLatency(space, MeasurementStore(store), device=device, runtime=runtime, threads=threads,
                           protocol=MeasurementProtocol(time_budget_s=time_budget), on_item=on_item)


def search(
    space: str = typer.Option("nb201", help="Search space (categorical: nb201, fbnet)."),
    device: str = typer.Option("local", help="Registered device measured for adaptation and checks, or a device of "
                               "--latency-data."),
    latency_budget: float = typer.Option(..., "--latency-budget", help="Latency budget in ms on the device."),
    objective: str = typer.Option("cifar100", help="Accuracy objective: cifar10, cifar100 or imagenet16 (NATS-Bench)."),
    accuracy_table: Path = typer.Option(None, help="NATS-Bench CSV (default $HWLAT_SHARED/data/nats-bench/nats_bench.csv)."),
    predictor: Path = typer.Option(None, help="Fitted predictor file (default: the shipped nb201-cpu predictor)."),
    measure: int = typer.Option(10, help="Architectures measured on the device to adapt the predictor."),
    latency_data: Path = typer.Option(None, help="Look the device's latencies up here (HELP folder or measurement "
                                      "table) instead of measuring."),
    runtime: str = typer.Option("onnxruntime", help="Runtime of the measurements: torch, onnxruntime or tvm."),
    threads: int = typer.Option(1, help="Intra-op threads of the runtime."),
    time_budget: float = typer.Option(1.0, help="Seconds of timing per measured architecture at most."),
    strategy: str = typer.Option("evolution", help="evolution, nsga2, tpe or random."),
    trials: int = typer.Option(300, help="Completed trials (accuracy queries) of the search."),
    seed: int = typer.Option(0, help="Seed of the samples and the sampler."),
    slack: float = typer.Option(0.05, help="Search under predicted latency <= budget x (1 + slack); checks use the budget."),
    checks: int = typer.Option(5, help="Candidates measured beyond the front until one truly meets the budget."),
    storage: str = typer.Option(None, help="Optuna storage: SQLAlchemy URL or .log journal (default: in memory)."),
    study: str = typer.Option(None, help="Study name (rerun with the same name to resume)."),
    workers: int = typer.Option(1, help="Worker processes sharing the study (needs --storage)."),
    db: str = typer.Option(None, help="Measurement store (default $HWLAT_DB or ./hwlat.sqlite)."),
    report: Path = typer.Option(None, help="Write the Pareto report to PREFIX.html/.csv/.json."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Find the most accurate architectures within a latency budget on a device, predicted then checked."""
    from hwlat.predictors import BasePredictor, shipped_predictor
    from hwlat.search import STRATEGIES, nats_bench_accuracy
    from hwlat.search._device import search_device
    from hwlat.search._storage import open_storage

    if not latency_budget > 0:
        raise HwlatError(f"--latency-budget must be a positive number of ms, got {latency_budget}")
    if measure < 2:
        raise HwlatError(f"--measure must be at least 2 architectures, got {measure}")
    if strategy not in STRATEGIES:
        raise HwlatError(f"unknown search strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if trials < 1 or workers < 1:
        raise HwlatError(f"--trials and --workers must be positive, got {trials} and {workers}")
    if workers > 1 and storage is None:
        raise HwlatError("several workers need a shared storage (--storage sqlite:///search.db, or a .log journal)")
    if not 0 <= slack < 1 or checks < 0:
        raise HwlatError(f"--slack must be in [0, 1) and --checks >= 0, got {slack} and {checks}")
    if storage is not None:
        open_storage(storage)  # a bad URL or folder fails here, before any measurement
    if report is not None and not report.parent.is_dir():
        raise HwlatError(f"cannot write report {report}: directory {report.parent} does not exist")
    accuracy = nats_bench_accuracy(objective, accuracy_table)
    model = BasePredictor.load(predictor) if predictor else shipped_predictor()
    if model.space_ != space:
        raise HwlatError(f"predictor is for space {model.space_!r}, not {space!r}")
    console = Console(stderr=True)
    progress = _progress(console, as_json)
    truth = _truth(space, device, latency_data, db, runtime, threads, time_budget, progress)
    with progress:
        task = progress.add_task(f"search ({strategy})", total=trials, last="")
        found = search_device(space, accuracy, truth, latency_budget, model, samples=measure, strategy=strategy,
                              trials=trials, seed=seed, slack=slack, checks=checks, storage=storage,
                              study_name=study, workers=workers, device=device,
                              progress=lambda done, total: progress.update(task, completed=done))
    paths = {}
    if report is not None:
        title = f"{space} on {device}: {objective} within {latency_budget:g} ms"
        paths = {k: str(v) for k, v in found.report(title).write(report).items()}
    summary = {"device": device, "latency_budget_ms": latency_budget, "objective": objective,
               **found.result.summary(), "target_measurements": found.measurements,
               "violations_on_front": int(found.front.filter(like="violates_").to_numpy(bool).sum()),
               "pick": None if found.pick is None else {"arch": found.pick["arch"], objective: float(found.pick[objective]),
                                                        "predicted_latency_ms": float(found.pick["latency_ms"]),
                                                        "true_latency_ms": float(found.pick["true_latency_ms"])},
               "report": paths}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_summary(console, summary, found.front, objective)


def _print_summary(console: Console, summary: dict, front, objective: str) -> None:
    table = Table(title=f"Front within {summary['latency_budget_ms']:g} ms (predicted), checked on {summary['device']}")
    for column in ("arch", objective, "predicted ms", "true ms", "over budget"):
        table.add_column(column)
    for _, row in front.iterrows():
        over = bool(row.filter(like="violates_").any())
        table.add_row(row["arch"], f"{row[objective]:.2f}", f"{row['latency_ms']:.3f}", f"{row['true_latency_ms']:.3f}",
                      "[red]yes" if over else "no")
    console.print(table)
    pick = summary["pick"]
    console.print(f"{summary['completed']} trials, {summary['queries']} accuracy queries, "
                  f"{summary['target_measurements']} measurements on the device, "
                  f"{summary['violations_on_front']} front member(s) over budget.")
    console.print("pick: none of the checked candidates is within budget" if pick is None else
                  f"pick: {pick['arch']}  {objective} {pick[objective]:.2f}, true {pick['true_latency_ms']:.3f} ms")
    for kind, path in summary["report"].items():
        console.print(f"report ({kind}): {path}")


def report(
    storage: str = typer.Option(..., help="Optuna storage of the search (SQLAlchemy URL or .log journal)."),
    study: str = typer.Option(..., help="Study name."),
    out: Path = typer.Option(..., help="Write PREFIX.html, PREFIX.csv and PREFIX.json."),
    title: str = typer.Option(None, help="Title of the report (default: the study name)."),
) -> None:
    """Write the Pareto report of a stored search (HTML with an offline plot, CSV, JSON)."""
    import optuna

    from hwlat.search import SearchResult
    from hwlat.search._storage import open_storage

    try:
        loaded = optuna.load_study(study_name=study, storage=open_storage(storage))
    except KeyError:
        raise HwlatError(f"no study {study!r} in {storage}") from None
    paths = SearchResult.from_study(loaded).report(title or study).write(out)
    for kind, path in paths.items():
        typer.echo(f"report ({kind}): {path}")
