"""The `hwlat` command: Typer sub-apps per mission part, errors shown as one line without a traceback."""

from __future__ import annotations

import sys

import typer

from hwlat._errors import HwlatError
from hwlat.cli import (
    _data,
    _devices,
    _interference,
    _interference_model,
    _predictor,
    _profile,
    _search,
    _shiftadd,
    _split,
    _tvm_tune,
)

#: exit code and message of a command stopped by Ctrl-C
_INTERRUPTED = 130
_INTERRUPTED_MESSAGE = "interrupted: everything measured so far is stored; rerun the command to resume"

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hardware-aware latency toolkit.")
app.add_typer(_devices.app, name="devices")
app.add_typer(_data.app, name="data")
app.add_typer(_predictor.app, name="predictor")
app.add_typer(_interference.app, name="interference")
_interference.app.command("train")(_interference_model.train)
_interference.app.command("evaluate")(_interference_model.evaluate)
_interference.app.command("predict")(_interference_model.predict)
app.command("profile")(_profile.profile)
app.command("search")(_search.search)
app.command("report")(_search.report)
app.command("split")(_split.split)
app.command("shiftadd")(_shiftadd.shiftadd)
app.command("tvm-tune")(_tvm_tune.tvm_tune)


def main() -> None:
    """Entry point of the console script."""
    try:
        code = app(standalone_mode=False)  # without standalone mode, `typer.Exit(n)` comes back as n
    except HwlatError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo(_INTERRUPTED_MESSAGE, err=True)
        sys.exit(_INTERRUPTED)
    except typer.TyperException as exc:  # usage errors: unknown option, a value of the wrong type
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    if code == _INTERRUPTED:  # Typer turns Ctrl-C inside a command into this return code
        typer.echo(_INTERRUPTED_MESSAGE, err=True)
    sys.exit(code if isinstance(code, int) else 0)
