"""System metrics as a time series: a snapshot of the kernel's counters every interval, turned into rates.

Samples are taken on absolute deadlines (t0 + k * interval) so errors do not accumulate; each row carries the
actual time it was taken, and rates divide by the actual time between snapshots. Hardware counters (LLC
misses, instructions) join as `perf_<event>_per_s` rates when `PerfCounters` are given (`_perf_counters`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from hwlat.profilers._perf_counters import PerfCounters, PerfEvent, Reading, counter_rates

_PROC = Path("/proc")


@dataclass(frozen=True)
class Snapshot:
    """Raw counters at one instant (perf_counter seconds)."""

    t: float
    cpu_busy: tuple[float, ...]  # per core: non-idle CPU seconds
    cpu_total: tuple[float, ...]
    ctx_switches: int
    interrupts: int
    soft_interrupts: int
    page_faults: float  # NaN where /proc/vmstat is unreadable
    procs_running: float
    procs_blocked: float
    load1: float
    mem_used_frac: float
    mem_available_gb: float
    swap_used_frac: float
    perf_events: tuple[PerfEvent, ...] = ()
    perf: Mapping[str, Reading] = field(default_factory=dict)  # raw perf counter readings of `perf_events`


def _proc_stat() -> dict[str, int]:
    """procs_running and procs_blocked from /proc/stat (Linux); empty elsewhere."""
    try:
        lines = (_PROC / "stat").read_text().splitlines()
    except OSError:
        return {}
    return {parts[0]: int(parts[1]) for parts in (line.split() for line in lines)
            if parts and parts[0] in ("procs_running", "procs_blocked")}


def _page_faults() -> float:
    try:
        for line in (_PROC / "vmstat").read_text().splitlines():
            if line.startswith("pgfault "):
                return float(line.split()[1])
    except OSError:
        pass
    return math.nan


def snapshot(counters: PerfCounters | None = None) -> Snapshot:
    """Read every counter once (about a millisecond), the perf `counters` too when given."""
    t = time.perf_counter()
    per_core = psutil.cpu_times(percpu=True)
    stats = psutil.cpu_stats()
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    procs = _proc_stat()
    idle = [c.idle + getattr(c, "iowait", 0.0) for c in per_core]
    totals = [sum(c) - getattr(c, "guest", 0.0) - getattr(c, "guest_nice", 0.0) for c in per_core]
    return Snapshot(
        t=t, cpu_busy=tuple(total - i for total, i in zip(totals, idle)), cpu_total=tuple(totals),
        ctx_switches=stats.ctx_switches, interrupts=stats.interrupts, soft_interrupts=stats.soft_interrupts,
        page_faults=_page_faults(), procs_running=float(procs.get("procs_running", math.nan)),
        procs_blocked=float(procs.get("procs_blocked", math.nan)), load1=os.getloadavg()[0],
        mem_used_frac=1 - memory.available / memory.total, mem_available_gb=memory.available / 1024 ** 3,
        swap_used_frac=swap.percent / 100, perf_events=counters.events if counters else (),
        perf=counters.read() if counters else {})


def metrics_between(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Utilisation and rates over (before, after], gauges at `after`; names as in the dataset schema."""
    seconds = max(after.t - before.t, 1e-9)
    utils = []
    for busy0, busy1, total0, total1 in zip(before.cpu_busy, after.cpu_busy, before.cpu_total, after.cpu_total):
        elapsed = total1 - total0
        utils.append(min(1.0, max(0.0, (busy1 - busy0) / elapsed)) if elapsed > 0 else math.nan)
    known = [u for u in utils if not math.isnan(u)]
    row = {"cpu_util_mean": sum(known) / len(known) if known else math.nan,
           "cpu_util_max": max(known) if known else math.nan}
    row.update({f"cpu{i}_util": u for i, u in enumerate(utils)})
    row.update(
        ctx_switches_per_s=(after.ctx_switches - before.ctx_switches) / seconds,
        interrupts_per_s=(after.interrupts - before.interrupts) / seconds,
        soft_interrupts_per_s=(after.soft_interrupts - before.soft_interrupts) / seconds,
        load1=after.load1, procs_running=after.procs_running, procs_blocked=after.procs_blocked,
        mem_used_frac=after.mem_used_frac, mem_available_gb=after.mem_available_gb,
        swap_used_frac=after.swap_used_frac, page_faults_per_s=(after.page_faults - before.page_faults) / seconds)
    if after.perf_events:
        row.update(counter_rates(before.perf, after.perf, seconds, after.perf_events))
    return row


def sample_series(t0: float, duration_s: float, interval_s: float,
                  counters: PerfCounters | None = None) -> list[dict[str, float]]:
    """Rows (step, t_s, metrics...) for the windows ending at t0 + interval, t0 + 2 interval, ... t0 + duration.

    Blocks until the last sample; `t_s` is when each sample was actually taken, in seconds after t0. With perf
    `counters`, each row also has their rates.
    """
    steps = max(1, round(duration_s / interval_s))
    _sleep_until(t0)
    previous = snapshot(counters)
    rows = []
    for step in range(steps):
        _sleep_until(t0 + (step + 1) * interval_s)
        current = snapshot(counters)
        rows.append({"step": step, "t_s": current.t - t0, **metrics_between(previous, current)})
        previous = current
    return rows


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
