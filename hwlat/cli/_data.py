"""`hwlat data`: export and summarise the measurement store."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hwlat.store import EXPORT_FORMATS, MeasurementStore

app = typer.Typer(no_args_is_help=True, help="Export and summarise stored measurements.")

_DB_HELP = "SQLAlchemy URL or SQLite path (default $HWLAT_DB or ./hwlat.sqlite)."


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="Output file (.csv or .parquet); devices go to <stem>.devices.json."),
    db: str = typer.Option(None, help=_DB_HELP),
    format: str = typer.Option(None, "--format", help=f"One of {', '.join(EXPORT_FORMATS)} (default: from --out)."),
    space: str = typer.Option(None, help="Only this search space."),
    platform: str = typer.Option(None, help="Only this platform, e.g. onnxruntime/t1/b1."),
    tag: str = typer.Option(None, help="Only this tag ('' for untagged measurements)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"rows": n, "path": ...}.'),
) -> None:
    """Write stored measurements to CSV or Parquet, atomically."""
    filters = {name: value for name, value in (("space", space), ("platform", platform), ("tag", tag))
               if value is not None}
    with MeasurementStore(db, create=False) as store:
        rows = store.export(out, format=format, **filters)
    if as_json:
        typer.echo(json.dumps({"rows": rows, "path": str(out)}))
    else:
        typer.echo(f"{rows} rows written to {out}")


@app.command()
def summary(
    db: str = typer.Option(None, help=_DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list with one object per group."),
) -> None:
    """Count and median latency per space, device, platform and tag."""
    with MeasurementStore(db, create=False) as store:
        frame = store.summary()
    if as_json:
        typer.echo(frame.to_json(orient="records"))
        return
    table = Table(title=store.url, caption="median ms and cv: medians over the architectures of each row")
    for header in ("space", "device", "platform", "tag", "archs", "median ms", "cv"):
        table.add_column(header, overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(row.space, row.device_id, row.platform, row.tag or "-", str(row.count),
                      f"{row.median_ms:.4g}", f"{row.cv:.3f}")
    Console().print(table)
