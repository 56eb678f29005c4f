"""The `hwlat` command: Typer sub-apps per mission part, errors shown as one line without a traceback."""

from __future__ import annotations

import sys

import typer

from hwlat._errors import HwlatError
from hwlat.cli import _data, _devices, _predictor, _profile, _search, _split

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hardware-aware latency toolkit.")
app.add_typer(_devices.app, name="devices")
app.add_typer(_data.app, name="data")
app.add_typer(_predictor.app, name="predictor")
app.command("profile")(_profile.profile)
app.command("search")(_search.search)
app.command("report")(_search.report)
app.command("split")(_split.split)


def main() -> None:
    """Entry point of the console script."""
    try:
        code = app(standalone_mode=False)  # without standalone mode, `typer.Exit(n)` comes back as n
    except HwlatError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted: everything measured so far is stored; rerun the command to resume", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown option, a value of the wrong type
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
