"""`hwlat shiftadd`: choose shift/add primitives per ViT block by accuracy, TVM latency and estimated energy."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hwlat._errors import HwlatError
from hwlat.cli._search import _progress

_LETTERS = {"softmax": "S", "binary": "B", "binary-linear": "L", "dense": "d", "shift": "s", "moe": "m"}
_LEGEND = "blocks: S softmax, B binary, L binary-linear attention; d dense, s shift, m moe MLP"


def _short(arch: str) -> str:
    """A block per two letters, e.g. 'Sd Bs Lm ...', so a 12-block arch fits a table cell."""
    return " ".join("".join(_LETTERS[part] for part in block.split("+")) for block in arch.split("|"))


def shiftadd(
    model: str = typer.Option("vit-tiny", help="Shape whose latency and energy are optimised: vit-tiny (DeiT-Tiny) "
                              "or vit-digits."),
    device: str = typer.Option("local", help="Device the latency is measured on (this machine: local)."),
    trials: int = typer.Option(40, help="Completed trials (fine-tuned accuracies) of the search."),
    strategy: str = typer.Option("nsga2", help="evolution, nsga2, tpe or random."),
    seed: int = typer.Option(0, help="Seed of training, fine-tuning and the sampler."),
    threads: int = typer.Option(2, help="TVM threads of the latency measurements."),
    moe_shift_fraction: float = typer.Option(0.6, help="Share of tokens an MoE MLP routes to its shift expert."),
    finetune_epochs: int = typer.Option(None, help="Fine-tuning epochs per candidate (default: the library's)."),
    base_epochs: int = typer.Option(None, help="Training epochs of the original digits ViT (default: the library's)."),
    verify: int = typer.Option(5, help="Front members compiled and timed as whole models."),
    processes: int = typer.Option(3, help="Fresh processes per whole-model timing (the smallest median counts)."),
    time_budget: float = typer.Option(1.0, help="Seconds of timing per latency measurement at most."),
    storage: str = typer.Option(None, help="Optuna storage: SQLAlchemy URL or .log journal (default: in memory)."),
    study: str = typer.Option(None, help="Study name (rerun with the same name to resume)."),
    db: str = typer.Option(None, help="Measurement store (default $HWLAT_DB or ./hwlat.sqlite)."),
    report: Path = typer.Option(None, help="Write the Pareto report to PREFIX.html/.csv/.json."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Search per-block attention {softmax, binary, binary-linear} and MLP {dense, shift, moe} of a ViT."""
    from hwlat.profilers import MeasurementProtocol
    from hwlat.shiftadd._config import get_model_config
    from hwlat.shiftadd._search import search_shiftadd
    from hwlat.store import MeasurementStore

    get_model_config(model)
    if device != "local":
        raise HwlatError(f"shiftadd measures with TVM on this machine only (--device local), got {device!r}")
    if trials < 1:
        raise HwlatError(f"--trials must be a positive number, got {trials}")
    if not 0.0 <= moe_shift_fraction <= 1.0:
        raise HwlatError(f"--moe-shift-fraction must be between 0 and 1, got {moe_shift_fraction}")
    console = Console(stderr=True, quiet=as_json)
    with _progress(console, as_json) as progress:
        table_task = progress.add_task("latency table", total=None, last="")
        search_task = progress.add_task("search", total=trials, last="")
        measure_task = progress.add_task("whole models", total=None, last="")
        found = search_shiftadd(
            model, trials=trials, seed=seed, strategy=strategy, threads=threads, moe_shift_fraction=moe_shift_fraction,
            finetune_epochs=finetune_epochs, base_epochs=base_epochs, verify=verify, processes=processes,
            storage=storage, study_name=study, store=MeasurementStore(db), protocol=MeasurementProtocol(time_budget_s=time_budget),
            on_stage=console.log,
            on_table_item=lambda name, stats: progress.update(
                table_task, advance=1, last=f"{name} " + (f"{stats.median_ms:.3f} ms" if stats else "cached")),
            progress=lambda done, total: progress.update(search_task, completed=done),
            on_measured=lambda arch, ms: progress.update(measure_task, advance=1, last=f"{ms:.3f} ms"))
    paths = [str(p) for p in found.report().write(report).values()] if report else []
    front = found.result.front.merge(found.measured, on="arch", how="left")
    if as_json:
        typer.echo(json.dumps({"model": model, "summary": found.result.summary(), "original": found.original,
                               "front": json.loads(front.to_json(orient="records")), "report": paths}))
        return
    out = Console()
    view = Table(title=f"{model}: Pareto front", caption=f"{_LEGEND}; accuracy on digits (validation); latency "
                 "predicted by the TVM block table and measured as a whole TVM model; energy: op-count estimate")
    for column in ("arch", "acc", "pred ms", "TVM ms", "µJ est."):  # numbers never cut; the arch folds if needed
        view.add_column(column, no_wrap=column != "arch", overflow="fold")
    original = found.original
    view.add_row(f"{_short(original['arch'])} (original)", f"{original['accuracy']:.4f}", f"{original['latency_ms']:.3f}",
                 f"{original['measured_latency_ms']:.3f}", f"{original['energy_uj']:.1f}")
    for _, row in front.iterrows():
        measured = "" if row.isna()["measured_latency_ms"] else f"{row['measured_latency_ms']:.3f}"
        view.add_row(_short(row["arch"]), f"{row['accuracy']:.4f}", f"{row['latency_ms']:.3f}", measured,
                     f"{row['energy_uj']:.1f}")
    out.print(view)
    for path in paths:
        out.print(f"wrote {path}")
