"""The co-location dataset on disk: scenarios.csv, metrics.parquet, inferences.parquet and a data card.

`export_colocation_dataset` writes it from the store (all files or none); `load_colocation_dataset` reads it back
and checks the columns the models rely on, naming what is missing in one line; `import_colocation_dataset` puts an
exported dataset back into a store, so a shipped dataset can be extended by recording more scenarios and exporting
again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hwlat._errors import HwlatError
from hwlat._files import write_atomically
from hwlat.profilers._perf_counters import hardware_counters_note
from hwlat.store._colocation import PHASES, SCENARIO_COLUMNS, ColocationStore

if TYPE_CHECKING:
    import pandas as pd

#: columns every scenarios.csv has (the contract with the interference models)
SCENARIO_REQUIRED = (
    "scenario_id", "workload", "workload_family", "target", "target_runtime", "target_threads", "target_flops",
    "target_params", "corunners", "n_corunner_procs", "interval_s", "isolated_median_ms", "isolated_p90_ms",
    "isolated_p99_ms", "isolated_after_median_ms", "colocated_median_ms", "colocated_p90_ms", "colocated_p99_ms",
    "colocated_n", "slowdown", "slowdown_p90", "slowdown_p99", "disturbed", "device_id", "created_at",
    "hwlat_version")
METRIC_KEYS = ("scenario_id", "phase", "step", "t_s")
#: metric columns in file order; per-core `cpu{i}_util` follow `cpu_util_max`
METRIC_ORDER = ("cpu_util_mean", "cpu_util_max", "ctx_switches_per_s", "interrupts_per_s", "soft_interrupts_per_s",
                "load1", "procs_running", "procs_blocked", "mem_used_frac", "mem_available_gb", "swap_used_frac",
                "page_faults_per_s", "target_latency_ms", "target_inferences")
METRIC_REQUIRED = (*METRIC_KEYS, "cpu_util_mean", "target_latency_ms", "target_inferences")
FILES = ("scenarios.csv", "metrics.parquet", "inferences.parquet", "README.md")
#: scenario columns derived from the inferences (`mean_latencies`): written by export, derived on load when absent
MEAN_COLUMNS = ("isolated_mean_ms", "colocated_mean_ms", "slowdown_mean")


def export_colocation_dataset(store: ColocationStore | str | os.PathLike | None, out: str | os.PathLike, *,
                              device_id: str | None = None, notes: str = "") -> dict:
    """Write the stored scenarios of one device to `out` (created if needed); returns counts.

    `notes` (Markdown: how the data was recorded, the command) is added to the generated data card.
    """
    owned = not isinstance(store, ColocationStore)
    store = ColocationStore(store, create=False) if owned else store
    try:
        scenarios = store.scenarios_frame(**({"device_id": device_id} if device_id else {}))
        devices = sorted(scenarios["device_id"].unique())
        if not devices:
            raise HwlatError(f"no co-location scenarios{f' of device {device_id!r}' if device_id else ''} "
                             f"in {store.url}")
        if len(devices) > 1:
            raise HwlatError(f"the store holds scenarios of {len(devices)} devices ({', '.join(devices)}); "
                             f"choose one with --device-id")
        metrics = _ordered_metrics(store.series_frame(devices[0]))
        inferences = store.inferences_frame(devices[0]).astype({"end_s": "float32", "latency_ms": "float32"})
        scenarios = scenarios.join(mean_latencies(inferences, scenarios), on="scenario_id")
        fingerprint = store.devices_frame().set_index("id")["fingerprint"].get(devices[0])
    finally:
        if owned:
            store.close()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HwlatError(f"cannot create {str(out)!r}: {exc.strerror}") from None
    card = data_card(scenarios, metrics, json.loads(fingerprint) if fingerprint else {}, notes)
    write_atomically({
        out / "scenarios.csv": lambda p: scenarios.to_csv(p, index=False),
        out / "metrics.parquet": lambda p: metrics.to_parquet(p, index=False),
        out / "inferences.parquet": lambda p: inferences.to_parquet(p, index=False),
        out / "README.md": lambda p: p.write_text(card),
    })
    return {"out": str(out), "device_id": devices[0], "scenarios": len(scenarios),
            "disturbed": int(scenarios["disturbed"].sum()), "metric_rows": len(metrics),
            "inferences": len(inferences)}


def import_colocation_dataset(path: str | os.PathLike, store: ColocationStore | str | os.PathLike | None) -> dict:
    """Store every scenario of the dataset at `path` (with its metric series and inferences) that `store` lacks.

    Each scenario is one transaction, so an interrupted import resumes; returns how many were imported and skipped.
    """
    import pandas as pd

    scenarios, metrics = load_colocation_dataset(path)
    file = Path(path) / "inferences.parquet"
    if not file.is_file():
        raise HwlatError(f"{str(path)!r} is not a complete co-location dataset: missing inferences.parquet")
    try:
        inferences = pd.read_parquet(file)
    except (OSError, ValueError) as exc:
        raise HwlatError(f"cannot read {str(file)!r}: {str(exc).splitlines()[0]}") from None
    absent = [c for c in ("scenario_id", "phase", "end_s", "latency_ms") if c not in inferences.columns]
    if absent:
        raise HwlatError(f"{file}: missing column(s) {', '.join(absent)}")
    columns = [c for c in SCENARIO_COLUMNS if c in scenarios.columns]
    series_by_id = dict(tuple(metrics.groupby("scenario_id", sort=False)))
    inferences_by_id = dict(tuple(inferences.groupby("scenario_id", sort=False)))
    owned = not isinstance(store, ColocationStore)
    store = ColocationStore(store) if owned else store
    imported = 0
    try:
        for record in scenarios[columns].to_dict("records"):
            row = {name: _plain(value) for name, value in record.items()}
            series = series_by_id.get(row["scenario_id"], metrics.iloc[:0]).drop(columns="scenario_id")
            runs = inferences_by_id.get(row["scenario_id"], inferences.iloc[:0])
            imported += store.add_scenario(
                row,
                {phase: (part["end_s"].to_numpy(), part["latency_ms"].to_numpy())
                 for phase, part in runs.groupby("phase", sort=False)},
                {phase: part.drop(columns="phase").to_dict("records")
                 for phase, part in series.groupby("phase", sort=False)})
    finally:
        if owned:
            store.close()
    return {"db": store.url, "imported": imported, "skipped": len(scenarios) - imported}


def _plain(value):
    """A dataset cell as a database value: NaN/NaT as NULL, numpy and pandas scalars as Python ones."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


def _ordered_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Key columns, then metrics in the stable order (per-core columns by core number), as float32."""
    cores = sorted((c for c in metrics.columns if c.startswith("cpu") and c.endswith("_util") and c[3:-5].isdigit()),
                   key=lambda c: int(c[3:-5]))
    known = [c for c in METRIC_ORDER[:2]] + cores + [c for c in METRIC_ORDER[2:]]
    columns = [c for c in known if c in metrics.columns]
    extra = sorted(set(metrics.columns) - set(columns) - set(METRIC_KEYS))
    frame = metrics[[*METRIC_KEYS, *columns, *extra]].copy()
    value_columns = ["t_s", *columns, *extra]
    frame[value_columns] = frame[value_columns].astype("float32")
    frame["step"] = frame["step"].astype("int32")
    return frame


def load_colocation_dataset(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scenarios, metrics) of an exported dataset directory, with the contract's columns checked; the scenarios
    carry their workload's pressure (`_pressure.PRESSURE_COLUMNS`, NaN until `pressure.csv` has it)."""
    import pandas as pd

    path = Path(path)
    files = {name: path / name for name in ("scenarios.csv", "metrics.parquet")}
    missing_files = [name for name, file in files.items() if not file.is_file()]
    if missing_files:
        raise HwlatError(f"{str(path)!r} is not a co-location dataset: missing {', '.join(missing_files)}")
    try:
        scenarios = pd.read_csv(files["scenarios.csv"], dtype={"scenario_id": str})
        metrics = pd.read_parquet(files["metrics.parquet"])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HwlatError(f"cannot read co-location dataset {str(path)!r}: {str(exc).splitlines()[0]}") from None
    for name, frame, required in (("scenarios.csv", scenarios, SCENARIO_REQUIRED),
                                  ("metrics.parquet", metrics, METRIC_REQUIRED)):
        absent = [c for c in required if c not in frame.columns]
        if absent:
            raise HwlatError(f"{path / name}: missing column(s) {', '.join(absent)}")
    unknown_phases = sorted(set(metrics["phase"]) - set(PHASES))
    if unknown_phases:
        raise HwlatError(f"{path / 'metrics.parquet'}: unknown phase(s) {', '.join(unknown_phases)}")
    orphans = set(metrics["scenario_id"]) - set(scenarios["scenario_id"])
    if orphans:
        raise HwlatError(f"{path / 'metrics.parquet'}: {len(orphans)} scenario id(s) not in scenarios.csv")
    scenarios["created_at"] = pd.to_datetime(scenarios["created_at"], utc=True)
    if "placement" not in scenarios.columns:  # exported before placements existed: the scheduler placed everything
        scenarios["placement"] = "free"
    if "slowdown_mean" not in scenarios.columns and (path / "inferences.parquet").is_file():  # exported before it
        try:
            inferences = pd.read_parquet(path / "inferences.parquet", columns=["scenario_id", "phase", "latency_ms"])
        except (OSError, ValueError) as exc:
            raise HwlatError(f"cannot read {str(path / 'inferences.parquet')!r}: {str(exc).splitlines()[0]}") from None
        scenarios = scenarios.join(mean_latencies(inferences, scenarios), on="scenario_id")
    from hwlat.profilers._pressure import join_pressure, load_pressure  # _pressure needs the recorder: import late

    return join_pressure(scenarios, load_pressure(path)), metrics


def mean_latencies(inferences: pd.DataFrame, scenarios: pd.DataFrame) -> pd.DataFrame:
    """`MEAN_COLUMNS` per scenario_id: the mean latency alone (before) and co-located, and the mean slowdown, the
    co-located mean over the isolated median like the other slowdowns. The mean is what throughput follows, and it
    has no knife edge: where the median of a target of about half a time slice jumps between ~1x and ~3.6x, the mean
    moves with the share of inferences that were preempted."""
    import pandas as pd

    means = inferences.groupby(["scenario_id", "phase"])["latency_ms"].mean().unstack("phase")
    means = means.reindex(columns=["isolated_before", "colocated"]).astype(float)
    isolated = scenarios.set_index("scenario_id")["isolated_median_ms"].astype(float)
    return pd.DataFrame({"isolated_mean_ms": means["isolated_before"], "colocated_mean_ms": means["colocated"],
                         "slowdown_mean": means["colocated"] / isolated.reindex(means.index)},
                        index=means.index).rename_axis("scenario_id")


def _slice_note(scenarios: pd.DataFrame) -> str:
    """What the data card says about the measured time slice (`time_slice_ms`)."""
    import pandas as pd

    measured = pd.to_numeric(scenarios.get("time_slice_ms", pd.Series(dtype=float)), errors="coerce").dropna()
    if measured.empty:
        return "not measured for these scenarios (recorded before the recorder measured it)."
    low, high = f"{measured.min():.2f}", f"{measured.max():.2f}"
    return (f"`time_slice_ms`, measured before each recording session with `hwlat.profilers.measure_time_slice_ms` "
            f"(a CPU-bound process beside another on one core), {low if low == high else f'{low}-{high}'} ms here, "
            f"for {len(measured)} of {len(scenarios)} scenarios.")


def data_card(scenarios: pd.DataFrame, metrics: pd.DataFrame, fingerprint: dict, notes: str = "") -> str:
    """The dataset's README: machine, counts, settings, columns and caveats, then the recorder's `notes`."""
    clean = scenarios[scenarios["disturbed"] == 0]
    caches = fingerprint.get("caches") or {}
    machine = (f"`{scenarios['device_id'].iloc[0]}`: {fingerprint.get('cpu_model', '?')} "
               f"({fingerprint.get('cpu_arch', '?')}), {fingerprint.get('physical_cores', '?')} cores, "
               f"L2 {caches.get('l2', 0) // 1024} KiB, L3 {caches.get('l3', 0) // 1024 ** 2} MiB, "
               f"{(fingerprint.get('memory_bytes') or 0) / 1024 ** 3:.1f} GiB, {fingerprint.get('os_release', '?')}, "
               f"kernel {fingerprint.get('kernel', '?')}, Python {fingerprint.get('python', '?')}")
    per_family = clean.groupby("workload_family")["slowdown"].agg(["size", "median", "max"])
    family_rows = "\n".join(f"| {family} | {int(row['size'])} | {row['median']:.3f} | {row['max']:.3f} |"
                            for family, row in per_family.iterrows())
    targets = clean.groupby(["target_runtime", "target_threads"]).size()
    target_rows = "\n".join(f"| {runtime} | {threads} | {count} |" for (runtime, threads), count in targets.items())
    metric_columns = [c for c in metrics.columns if c not in METRIC_KEYS]
    period = ", ".join(sorted(str(p) for p in scenarios["phase_s"].unique())) if "phase_s" in scenarios else "?"
    intervals = ", ".join(sorted(str(i) for i in scenarios["interval_s"].unique()))
    placements = ", ".join(f"{count} {name}" for name, count in scenarios["placement"].value_counts().items())
    return f"""# Co-location dataset (data card)

Target models measured alone, beside co-runners (other models, synthetic stressors) and alone again, with
system metrics sampled over time. Recorded with `hwlat interference record`, exported with
`hwlat interference export` (hwlat {', '.join(sorted(scenarios['hwlat_version'].unique()))}).

## Counts
- {len(scenarios)} scenarios, {len(clean)} not disturbed, {len(scenarios) - len(clean)} disturbed
  (isolated medians before and after differ by more than the tolerance; excluded from training by default).
- {clean['workload'].nunique()} workloads (co-runner mixes) and {clean['target'].nunique()} target models in
  {clean.groupby(['target', 'target_runtime', 'target_threads']).ngroups} target configurations (undisturbed).
- Recorded {scenarios['created_at'].min()} to {scenarios['created_at'].max()}.

| workload family | scenarios | median slowdown | max slowdown |
| --- | --- | --- | --- |
{family_rows}

| target runtime | threads | scenarios |
| --- | --- | --- |
{target_rows}

## Machine
{machine}.

## How each scenario is recorded
Phases of {period} s each, in this order: `isolated_before` (target alone), `corunners` (co-runners alone),
`colocated` (both), `isolated_after` (target alone). The target runs back-to-back inferences at batch 1 in its
own process; each co-runner is its own process (a model with its runtime and threads, or a single-threaded
stressor: `cpu` = transcendental maths in L1, `membw` = streaming copies over a 256 MiB array, `cache` = random
gathers over an LLC-sized buffer), running `intensity` (duty cycle) of every 50 ms period from its `start_s`.
System metrics are sampled every {intervals} s (absolute deadlines; `t_s` is the actual time, after the phase
start). Hardware counters: {hardware_counters_note(metric_columns)}.
Placement (`placement`; {placements}): `free` leaves the processes to the scheduler, with the runtimes' default
spin-waiting threads; `pinned` gives the target the first `target_threads` cores and the co-runner processes
their cores round-robin from the second core, and makes runtime threads wait passively (OpenMP/TVM without spinning,
ONNX Runtime `session.intra_op.allow_spinning=0`). The two are different quantities, not repeats of each other.
A scenario whose isolated medians before and after differ by more than the tolerance is tried again (`attempts`)
and kept with `disturbed=1` if no try was clean. Before each try the recorder waits a few seconds for other work
to leave the cores; `background_util` is the CPU utilisation it saw last (0-1, all cores), with every target and
co-runner process idle.

## Files and columns
- `scenarios.csv`: one row per scenario: {', '.join(f'`{c}`' for c in SCENARIO_COLUMNS)}.
  Slowdowns divide the co-located median / p90 / p99 / mean (`slowdown_mean`) by the isolated (before) median;
  {', '.join(f'`{c}`' for c in MEAN_COLUMNS)} come from `inferences.parquet`.
- `metrics.parquet`: one row per (scenario_id, phase, step): `t_s`, then {', '.join(f'`{c}`' for c in metric_columns)}
  (float32). `target_latency_ms` is the mean latency of the target inferences that ended in the step's window,
  `target_inferences` their number (in the `corunners` phase 0 and NaN: the target does not run).
- `inferences.parquet`: every target inference: scenario_id, phase, `end_s` (after the phase start),
  `latency_ms` (float32).
- Load with `hwlat.profilers.load_colocation_dataset(path) -> (scenarios, metrics)`.

## Caveats
- Recorded on a shared machine: other work may run at any time. The before/after check catches changes that
  last through a scenario, not short bursts; `isolated_p99_ms` shows how noisy the baseline was.
- Slowdowns depend on this machine (core count, cache sizes, the hypervisor's scheduling).
- The median hides time slicing: an inference much shorter than the scheduler's slice mostly runs untouched,
  so short targets beside CPU-bound co-runners show slowdowns near 1 in the median and large ones in
  `slowdown_p90` / `slowdown_p99`. The slice depends on the kernel (its tick, CONFIG_HZ, and the scheduler's base
  slice): {_slice_note(scenarios)}

{notes.strip()}
"""
