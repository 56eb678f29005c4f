"""`hwlat interference train/evaluate/predict`: interference models on a co-location dataset."""

from __future__ import annotations

import json
from pathlib import Path

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

_DATA_HELP = "Co-location dataset directory (scenarios.csv, metrics.parquet), e.g. data/interference-cpu."
_DISTURBED_HELP = "Also use scenarios flagged disturbed (excluded by default)."


_BASE_HELP = ("What gb and transformer learn: the log-slowdown itself (none) or the correction to the time-slice "
              "mixture (slice); gb also to the mixture at the contended latency, fitted first (contended).")


def _model(kind: str, seed: int, members: int | None, base: str = "none"):
    """A new model of `kind`; `seed`, `members` and `base` go to the kinds that take them (HwlatError for an
    unknown `base`)."""
    from hwlat.interference import BASES, FITTED_BASE, make_model

    if base not in (*BASES, FITTED_BASE):
        raise HwlatError(f"--base must be one of {', '.join((*BASES, FITTED_BASE))}, got {base!r}")
    model = make_model(kind)
    params = model.get_params()
    settings = {"seed": seed, "random_state": seed, "members": members, "base": base}
    model.set_params(**{k: v for k, v in settings.items() if k in params and v is not None})
    return model


def _load(data: Path, include_disturbed: bool):
    from hwlat.interference import InterferenceData

    loaded = InterferenceData.load(data, include_disturbed=include_disturbed)
    if not len(loaded):
        raise HwlatError(f"{data}: no scenario to use (all disturbed? try --include-disturbed)")
    return loaded


def _load_all(datasets: list[Path], include_disturbed: bool):
    """Every scenario of `datasets` (recordings of several days or hosts), in order."""
    loaded = _load(datasets[0], include_disturbed)
    for data in datasets[1:]:
        loaded = loaded.concat(_load(data, include_disturbed))
    return loaded


def train(
    data: list[Path] = typer.Option(..., "--data", help=_DATA_HELP + " Repeatable: trains on every recording."),
    out: Path = typer.Option(..., "--out", help="Model file to write (.npz)."),
    kind: str = typer.Option("transformer", "--model", help="transformer, gb, linear, none, slice or "
                             "contended-slice."),
    seed: int = typer.Option(0, help="Seed of the model (and of its inner validation splits)."),
    members: int = typer.Option(None, help="Ensemble members of the transformer (default 5)."),
    base: str = typer.Option("none", help=_BASE_HELP),
    include_disturbed: bool = typer.Option(False, "--include-disturbed", help=_DISTURBED_HELP),
) -> None:
    """Fit an interference model on every scenario of one or more datasets and save it."""
    if not out.parent.is_dir():
        raise HwlatError(f"cannot write {out}: directory {out.parent} does not exist")
    model = _model(kind, seed, members, base)
    if base != "none" and "base" not in model.get_params():
        raise HwlatError(f"--base {base} applies to gb and transformer, not to {kind}")
    loaded = _load_all(data, include_disturbed)
    with Console(stderr=True).status(f"training {kind} on {len(loaded)} scenarios"):
        model.fit(loaded)
    model.save(out)
    typer.echo(f"{kind} interference model trained on {len(loaded)} scenarios "
               f"({model.trained_on_['workloads']} workloads, {model.trained_on_['targets']} targets) "
               f"written to {out}")


def evaluate(
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    kinds: list[str] = typer.Option(None, "--model", help="Model(s) to evaluate (repeatable; default: none, "
                                    "linear, gb, transformer)."),
    split: str = typer.Option("workload", help="What a test fold holds out: workload or target."),
    folds: int = typer.Option(5, help="Folds of the grouped cross-validation."),
    seed: int = typer.Option(0, help="Seed of the fold assignment and the models."),
    members: int = typer.Option(None, help="Ensemble members of the transformer (default 5)."),
    base: str = typer.Option("none", help=_BASE_HELP + " Applies to every --model that takes it."),
    include_disturbed: bool = typer.Option(False, "--include-disturbed", help=_DISTURBED_HELP),
    extra_train: list[Path] = typer.Option(None, "--extra-train", help="Another recording (repeatable) added to "
                                           "every training fold, less its scenarios of the held-out workloads or "
                                           "targets; test folds stay within --data."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """MAE % of predicted slowdowns on held-out workloads (or targets): grouped cross-validation per model."""
    from hwlat.interference import SPLITS, TARGETS, cross_validate

    if split not in SPLITS:
        raise HwlatError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    models = [_model(k, seed, members, base) for k in (kinds or ["none", "linear", "gb", "transformer"])]
    loaded = _load(data, include_disturbed)
    extra = _load_all(extra_train, include_disturbed) if extra_train else None
    console = Console(stderr=True)
    results = []
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=as_json, disable=as_json) as progress:
        for model in models:
            task = progress.add_task(f"{model.kind}, leave-{split}-out", total=folds)
            results.append(cross_validate(model, loaded, split, folds, seed, extra_train=extra,
                                          progress=lambda done, total, t=task: progress.update(t, completed=done,
                                                                                               total=total)))
    summaries = [r.summary() for r in results]
    reference = next((s["mae_slowdown"] for s in summaries if s["model"] == "gb"), None)
    for summary in summaries:
        summary["improvement_over_gb"] = (None if reference is None or not reference
                                          else 1 - summary["mae_slowdown"] / reference)
    if as_json:
        typer.echo(json.dumps({"data": str(data), "extra_train": [str(path) for path in extra_train or []],
                               "split": split, "seed": seed, "results": summaries}))
        return
    table = Table(title=f"Leave-{split}-out, {summaries[0]['folds']} folds, {summaries[0]['scenarios']} scenarios: "
                        "MAE % (mean over folds)")
    for column in ("model", "slowdown", "p90", "p99", "mean", "vs gb", "per fold (slowdown)", "fit s"):
        table.add_column(column)
    for s in summaries:
        gain = s["improvement_over_gb"]
        table.add_row(s["model"], *(f"{s[f'mae_{t}']:.2f}" for t in TARGETS),
                      "" if gain is None else f"{100 * gain:+.1f} %",
                      " ".join(f"{v:.2f}" for v in s["fold_mae_slowdown"]), f"{s['fit_s']:.1f}")
    Console().print(table)


def predict(
    model_path: Path = typer.Option(..., "--model", help="Model file from `train`."),
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    include_disturbed: bool = typer.Option(False, "--include-disturbed", help=_DISTURBED_HELP),
    out: Path = typer.Option(None, "--out", help="Write the predictions as CSV here instead of printing them."),
) -> None:
    """Predicted slowdowns of every scenario of a dataset, beside the measured ones and the MAE %."""
    from hwlat.interference import TARGETS, InterferenceModel, mae_percent

    model = InterferenceModel.load(model_path)
    loaded = _load(data, include_disturbed)
    predicted = model.predict(loaded)
    table = loaded.scenarios[["scenario_id", "workload", "target"]].copy()
    for name in TARGETS:
        table[f"pred_{name}"] = predicted[name].to_numpy()
        table[name] = loaded.scenarios[name].to_numpy(float)
    if out is not None:
        table.to_csv(out, index=False)
        typer.echo(f"{len(table)} predictions written to {out}")
    else:
        typer.echo(table.to_csv(index=False, float_format="%.4f"), nl=False)
    errors = ", ".join(f"{name} {mae_percent(table[f'pred_{name}'], table[name]):.2f} %" for name in TARGETS)
    typer.echo(f"MAE: {errors}", err=True)
