"""`hwlat tvm-tune`: tune a model's kernels for TVM with MetaSchedule, into a work_dir others apply."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from hwlat._errors import HwlatError


def tvm_tune(
    model: str = typer.Option(..., help="nb201:ARCH (or any space SPACE:ARCH), resnet:18|34, or onnx:PATH."),
    work_dir: str = typer.Option(..., help="MetaSchedule work_dir: new, empty, or tuned before (records are added, "
                                 "never removed: rerun to tune further)."),
    trials: int = typer.Option(32, help="Candidates to build and time in this run, over all kernels."),
    trials_per_round: int = typer.Option(8, help="Candidates per kernel and round; kernels without records go first."),
    threads: int = typer.Option(1, help="Cores the kernels are tuned for (TVM num-cores): the stage's or profile's "
                                "threads."),
    batch: int = typer.Option(1, help="Samples per input (the model's dynamic batch dimension)."),
    builder_timeout: float = typer.Option(60.0, help="Seconds one candidate may take to compile."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Tune a model's TVM kernels for this CPU; apply with split --tvm-records or profile --tuning-records."""
    from hwlat.profilers.runtimes._tvm import (
        check_tuning_work_dir,
        require_tvm,
        tune_onnx,
        tvm_target,
    )
    from hwlat.split import resolve_model, static_shapes
    from hwlat.split._segments import input_shapes

    for name, value in (("--trials", trials), ("--trials-per-round", trials_per_round), ("--threads", threads),
                        ("--batch", batch)):
        if value < 1:
            raise HwlatError(f"{name} must be >= 1, got {value}")
    if builder_timeout <= 0:
        raise HwlatError(f"--builder-timeout must be > 0 seconds, got {builder_timeout}")
    check_tuning_work_dir(work_dir)
    require_tvm()
    graph = static_shapes(resolve_model(model).load(), batch)
    console = Console(stderr=True, quiet=as_json)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=as_json, disable=as_json) as progress:
        task = progress.add_task(f"tune t{threads} b{batch}", total=trials)
        measured = [0]

        def on_trials(count: int) -> None:  # MetaSchedule may measure a few more than asked
            measured[0] += count
            progress.update(task, completed=measured[0], total=max(trials, measured[0]))

        result = tune_onnx(graph, input_shapes(graph), tvm_target(None, threads), work_dir, trials, trials_per_round,
                           builder_timeout, on_trials=on_trials)
    result = {"model": model, "threads": threads, "batch_size": batch, "trials": trials, **result}
    if as_json:
        typer.echo(json.dumps(result))
        return
    view = Table(title=f"{result['tasks']} kernels of {model} (best time of the records so far)")
    view.add_column("kernel")
    view.add_column("best ms", justify="right")
    for kernel, best in result["best_ms"].items():
        view.add_row(kernel, "untuned" if best is None else f"{best:.4f}")
    out = Console()
    out.print(view)
    out.print(f"{result['scheduled_kernels']} of {result['kernels']} kernels scheduled by the records in "
              f"{result['work_dir']} ({result['records']} records, {result['records_before']} before this run; "
              f"{result['seconds']:.0f} s); rerun to tune further")
