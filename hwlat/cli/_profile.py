"""`hwlat profile`: measure architectures of a space on this machine and store every record."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hwlat._errors import HwlatError


def _read_arch_file(path: Path) -> list[str]:
    """Architectures one per line; blank lines and `#` comments are ignored."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise HwlatError(f"cannot read architecture file {str(path)!r}: {exc.strerror}") from None
    archs = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not archs:
        raise HwlatError(f"architecture file {str(path)!r} lists no architectures")
    return archs


def _parse_cpus(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        cpus = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise HwlatError(f"--cpus must be a comma-separated list of core numbers, got {text!r}") from None
    return cpus


def _choose_archs(space, sample: int | None, seed: int, arch_file: Path | None, arch: list[str] | None,
                  all_archs: bool) -> list[str]:
    chosen = [name for name, given in (("--sample", sample is not None), ("--archs", arch_file is not None),
                                        ("--arch", bool(arch)), ("--all", all_archs)) if given]
    if len(chosen) != 1:
        raise HwlatError("choose exactly one of --sample N, --archs FILE, --arch STRING or --all"
                         + (f" (got {', '.join(chosen)})" if chosen else ""))
    if sample is not None:
        if sample <= 0:
            raise HwlatError(f"--sample must be a positive number of architectures, got {sample}")
        return space.sample(sample, seed=seed)
    if arch_file is not None:
        archs = _read_arch_file(arch_file)
        for number, text in enumerate(archs, start=1):
            try:
                space.canonical(text)
            except HwlatError as exc:
                raise HwlatError(f"{arch_file}: entry {number}: {exc}") from None
        return archs
    if arch:
        return list(arch)
    return list(space.enumerate())


def profile(
    space: str = typer.Option("nb201", help="Search space."),
    sample: int = typer.Option(None, help="Profile N architectures drawn at random (see --seed)."),
    seed: int = typer.Option(0, help="Seed of --sample: the same seed gives the same architectures."),
    archs: Path = typer.Option(None, "--archs", help="File with one architecture string per line."),
    arch: list[str] = typer.Option(None, "--arch", help="One architecture string (repeatable)."),
    all_archs: bool = typer.Option(False, "--all", help="Every architecture of a finite space."),
    runtime: str = typer.Option("onnxruntime", help="torch, onnxruntime or tvm."),
    threads: int = typer.Option(1, help="Intra-op threads of the runtime."),
    batch: int = typer.Option(1, help="Batch size."),
    optimization: str = typer.Option("all", help="ONNX Runtime graph optimisation level."),
    tuning_records: Path = typer.Option(None, help="TVM MetaSchedule work_dir whose records are applied."),
    torch_device: str = typer.Option("cpu", help="torch runtime device: cpu or cuda."),
    device: str = typer.Option("local", help="Registered device name (remote devices: --runtime tvm)."),
    item_timeout: float = typer.Option(600.0, help="Seconds one architecture may take before it is failed."),
    connect_timeout: float = typer.Option(60.0, help="Remote devices: seconds to wait for one of their servers."),
    db: str = typer.Option(None, help="SQLAlchemy URL or SQLite path (default $HWLAT_DB or ./hwlat.sqlite)."),
    tag: str = typer.Option("", help="Label to measure the same platform again (e.g. retest)."),
    target_ci: float = typer.Option(0.01, help="Stop when the median's relative 95% CI half-width is below this."),
    time_budget: float = typer.Option(2.0, help="Seconds of timing per architecture at most (after min repeats)."),
    min_repeats: int = typer.Option(20, help="Timed samples at least."),
    cpus: str = typer.Option(None, help="Pin the measuring process to these cores, e.g. 0,1."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Measure latencies on this machine; rerunning the same command resumes where it stopped."""
    from hwlat.profilers import MeasurementProtocol
    from hwlat.profilers import profile as run_profile
    from hwlat.spaces import get_space

    search_space = get_space(space)
    chosen = _choose_archs(search_space, sample, seed, archs, arch, all_archs)
    settings = {"onnxruntime": {"optimization": optimization},
                "tvm": {"tuning_records": str(tuning_records) if tuning_records else None},
                "torch": {"device": torch_device}}.get(runtime, {})
    protocol = MeasurementProtocol(target_rel_ci=target_ci, time_budget_s=time_budget, min_repeats=min_repeats)
    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    # the bar starts once the inputs are validated, so a bad input prints its error line alone
    progress = Progress(*columns, console=console, transient=as_json)
    task = progress.add_task(f"{runtime} t{threads} b{batch}", total=None, last="")

    def on_start(total: int, skipped: int) -> None:
        progress.update(task, total=total - skipped, last=f"{skipped} already stored" if skipped else "")
        progress.start()

    def on_item(arch_string: str, answer: dict) -> None:
        last = f"{answer['stats']['median_ms']:.3f} ms" if "stats" in answer else "[red]failed"
        progress.update(task, advance=1, last=last)

    try:
        result = run_profile(chosen, space=space, runtime=runtime, threads=threads, batch_size=batch,
                             runtime_settings=settings, protocol=protocol, store=db, device=device, tag=tag,
                             cpus=_parse_cpus(cpus), item_timeout_s=item_timeout, connect_timeout_s=connect_timeout,
                             on_start=on_start, on_item=on_item)
    finally:
        progress.stop()
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        console.print(f"{result.measured} measured, {result.skipped} already stored, {len(result.failed)} failed "
                      f"on {result.platform} ({result.device_id}); store: {result.db}")
        for failed_arch, error in result.failed[:5]:
            console.print(f"[red]failed[/red] {failed_arch}: {error}")
    if result.failed:
        raise typer.Exit(1)
