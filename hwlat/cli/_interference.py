"""`hwlat interference`: record co-location scenarios, list them, export them as a dataset and import one."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hwlat._errors import HwlatError

app = typer.Typer(no_args_is_help=True, help="Latency under co-location: record scenarios, export datasets, train and evaluate models.")

_DB_HELP = "SQLAlchemy URL or SQLite path (default $HWLAT_DB or ./hwlat.sqlite)."


def _lines(path: Path | None, what: str) -> list[str]:
    """Entries of a list file, one per line; blank lines and `#` comments are ignored."""
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise HwlatError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise HwlatError(f"{what} file {str(path)!r} lists nothing")
    return entries


@app.command()
def record(
    target: list[str] = typer.Option(None, "--target", help="Target SOURCE@RUNTIME-tN, e.g. nb201:<arch>@ort-t1 "
                                     "or onnx:model.onnx@ort-t2 (repeatable)."),
    targets: Path = typer.Option(None, "--targets", help="File with one target per line."),
    workload: list[str] = typer.Option(None, "--workload", help="Co-runner mix, items joined by '+': cpu-xN, "
                                       "membw-xN, cache-xN, SOURCE@RUNTIME-tN (repeatable)."),
    workloads: Path = typer.Option(None, "--workloads", help="File with one workload per line."),
    intensity: list[float] = typer.Option(None, "--intensity", help="Duty cycle of the co-runners in (0, 1] "
                                          "(repeatable; default 1)."),
    stagger: float = typer.Option(0.0, help="Seconds between the starts of successive co-runner processes."),
    phase: float = typer.Option(2.0, help="Seconds of each phase (isolated, co-runners, co-located, isolated)."),
    interval: float = typer.Option(0.1, help="Seconds between system-metric samples."),
    placement: str = typer.Option("free", help="free: the scheduler places the processes; pinned: fixed cores "
                                  "per process (target from core 0, co-runners round-robin from core 1) and "
                                  "runtime threads that sleep instead of spin-waiting."),
    tolerance: float = typer.Option(0.1, help="Relative before/after change of the isolated median that marks a "
                                    "scenario disturbed."),
    attempts: int = typer.Option(3, help="Tries per scenario while it comes out disturbed."),
    quiet_threshold: float = typer.Option(0.25, help="Before each try, wait until other work uses at most this "
                                          "share of the cores (0-1), but at most --quiet-wait seconds."),
    quiet_wait: float = typer.Option(30.0, help="Seconds to wait for a quiet machine before each try."),
    time_limit: float = typer.Option(None, help="Start no new scenario after this many seconds (rerun to resume)."),
    perf_events: str = typer.Option("auto", help="Hardware counters sampled with the metrics: auto (the generic "
                                    "cycle, instruction, cache and LLC events the kernel accepts), none, or perf "
                                    "event names, e.g. LLC-load-misses,uncore_imc/cas_count_read/."),
    db: str = typer.Option(None, help=_DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Record every target x workload x intensity not yet stored; rerunning the same command resumes."""
    from hwlat.profilers import record_colocation, scenarios_from

    scenarios = scenarios_from([*(target or []), *_lines(targets, "targets")],
                               [*(workload or []), *_lines(workloads, "workloads")], list(intensity or [1.0]),
                               stagger_s=stagger, phase_s=phase, interval_s=interval, placement=placement)
    console = Console(stderr=True)
    columns = (TextColumn("[bold]co-location"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    progress = Progress(*columns, console=console, transient=as_json)
    task = progress.add_task("record", total=None, last="")

    def on_start(total: int, skipped: int) -> None:
        progress.update(task, total=total - skipped, last=f"{skipped} already stored" if skipped else "")
        progress.start()

    def on_scenario(scenario, answer: dict) -> None:
        last = ("[red]failed" if "error" in answer else
                f"{answer['slowdown']:.2f}x {scenario.workload.name[:24]}" + (" [yellow]disturbed"
                                                                                if answer["disturbed"] else ""))
        progress.update(task, advance=1, last=last)

    try:
        result = record_colocation(scenarios, store=db, tolerance=tolerance, max_attempts=attempts,
                                   quiet_threshold=quiet_threshold, quiet_wait_s=quiet_wait, time_limit_s=time_limit,
                                   perf_events=perf_events, on_start=on_start, on_scenario=on_scenario)
    finally:
        progress.stop()
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        console.print(f"{result.recorded} recorded ({result.disturbed} disturbed), {result.skipped} already stored, "
                      f"{result.remaining} left for a rerun, {len(result.failed)} failed; store: {result.db}"
                      + (f"; scheduler time slice {result.time_slice_ms:.2f} ms" if result.time_slice_ms else "")
                      + f"; perf events: {', '.join(result.perf_events) or 'none'}")
        for name, error in result.failed[:5]:
            console.print(f"[red]failed[/red] {name}: {error}")
    if result.failed:
        raise typer.Exit(1)


@app.command("list")
def list_scenarios(
    db: str = typer.Option(None, help=_DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list with one object per workload."),
) -> None:
    """Stored scenarios per workload: count, disturbed, median and max slowdown (undisturbed)."""
    from hwlat.store import ColocationStore

    with ColocationStore(db, create=False) as store:
        frame = store.scenarios_frame()
    frame["clean_slowdown"] = frame["slowdown"].where(frame["disturbed"] == 0)
    summary = frame.groupby("workload", sort=True).agg(
        family=("workload_family", "first"), scenarios=("scenario_id", "size"), disturbed=("disturbed", "sum"),
        median_slowdown=("clean_slowdown", "median"), max_slowdown=("clean_slowdown", "max")).reset_index()
    if as_json:
        typer.echo(summary.to_json(orient="records"))
        return
    table = Table(title=f"{store.url}: {len(frame)} scenarios", caption="slowdown: co-located / isolated median")
    for header in ("workload", "family", "scenarios", "disturbed", "median slowdown", "max slowdown"):
        table.add_column(header, overflow="fold")
    for row in summary.itertuples(index=False):
        table.add_row(row.workload, row.family, str(row.scenarios), str(row.disturbed),
                      f"{row.median_slowdown:.3f}", f"{row.max_slowdown:.3f}")
    Console().print(table)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="Output directory (scenarios.csv, metrics.parquet, "
                             "inferences.parquet, README.md)."),
    db: str = typer.Option(None, help=_DB_HELP),
    device_id: str = typer.Option(None, help="Only this device (required when the store holds several)."),
    notes: Path = typer.Option(None, help="Markdown file appended to the generated data card."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as one JSON object."),
) -> None:
    """Write the stored scenarios as a dataset directory, atomically."""
    from hwlat.profilers import export_colocation_dataset

    text = ""
    if notes is not None:
        try:
            text = notes.read_text()
        except OSError as exc:
            raise HwlatError(f"cannot read notes file {str(notes)!r}: {exc.strerror}") from None
    counts = export_colocation_dataset(db, out, device_id=device_id, notes=text)
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(f"{counts['scenarios']} scenarios ({counts['disturbed']} disturbed), {counts['metric_rows']} "
                   f"metric rows, {counts['inferences']} inferences written to {counts['out']}")


@app.command("import")
def import_dataset(
    data: Path = typer.Argument(..., help="Dataset directory written by `hwlat interference export`."),
    db: str = typer.Option(None, help=_DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as one JSON object."),
) -> None:
    """Store the scenarios of an exported dataset that the store lacks, so recording more and exporting again
    extends it (resumable: each scenario is one transaction)."""
    from hwlat.profilers import import_colocation_dataset

    counts = import_colocation_dataset(data, db)
    if as_json:
        typer.echo(json.dumps(counts))
    else:
        typer.echo(f"{counts['imported']} scenarios imported, {counts['skipped']} already stored, into {counts['db']}")


@app.command()
def pressure(
    data: Path = typer.Argument(..., help="Co-location dataset directory (its scenarios.csv says what to probe)."),
    repeats: int = typer.Option(3, help="Measurements per workload placement, each with fresh processes."),
    rounds: int = typer.Option(3, help="Alternations of the probes alone and beside the co-runners."),
    seconds: float = typer.Option(0.3, help="Seconds of each probe run."),
    as_json: bool = typer.Option(False, "--json", help="Print the pressure table as JSON records."),
) -> None:
    """Probe the memory, cache and CPU pressure of each workload of a dataset where its targets run (pressure.csv,
    resumable): the "pressure" descriptors of the interference models."""
    from hwlat.profilers import record_pressure
    from hwlat.profilers._pressure import PRESSURE_KEYS, pressure_summary

    console = Console(stderr=True)
    progress = Progress(TextColumn("[bold]pressure"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[last]}"), TimeElapsedColumn(), console=console, transient=as_json)
    task = progress.add_task("probe", total=None, last="")

    def on_start(total: int, done: int) -> None:
        progress.update(task, total=total - done, last=f"{done} already measured" if done else "")
        progress.start()

    def on_measured(row: dict) -> None:
        progress.update(task, advance=1, last=f"{row['workload'][:24]} t{row['target_threads']}: stream "
                        f"{row['pressure_stream']:.2f}x, share {row['pressure_share']:.2f}, refill "
                        f"{row['pressure_refill']:.2f}x")

    try:
        table = record_pressure(data, repeats=repeats, rounds=rounds, seconds=seconds, on_start=on_start,
                                on_measured=on_measured)
    finally:
        progress.stop()
    if as_json:
        typer.echo(table.to_json(orient="records"))
        return
    medians, stray = pressure_summary(table)
    shown = Table(title=f"{data / 'pressure.csv'}: median of {len(table)} measurements",
                  caption="beside / alone: median chunk time of each probe kernel, the probe's on-core share, and "
                          "its first pass over an L2-resident buffer after a preemption (refill)")
    for header in ("workload", "placement", "intensity", "target threads", "stream", "gather", "compute", "share",
                   "refill"):
        shown.add_column(header, overflow="fold")
    for row in medians.itertuples(index=False):
        shown.add_row(row.workload, row.placement, f"{row.intensity:g}", str(row.target_threads),
                      *(f"{value:.2f}" for value in row[len(PRESSURE_KEYS):]))
    Console().print(shown)
    Console().print("single measurements vs their median, |x / median - 1| (median, p90, max): " + "; ".join(
        f"{column.removeprefix('pressure_')} " + " / ".join(f"{v:.1%}" for v in stray[column])
        for column in stray.columns))
