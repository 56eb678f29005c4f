"""Synthetic co-runners: small work steps that load the CPU, the memory bus or the last-level cache.

Each stressor is a `step()` of a few milliseconds, so a duty cycle (busy part of every period) can be kept
precisely and a pause request is honoured within one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: stressor kinds, in the order the CLI lists them
STRESSOR_KINDS = ("cpu", "membw", "cache")
#: duty-cycle period: each period runs steps for `duty * PERIOD_S` seconds, then sleeps the rest
PERIOD_S = 0.05
_DEFAULT_LLC_BYTES = 32 * 1024 ** 2
_MEMBW_BYTES = 256 * 1024 ** 2  # far beyond common LLCs: every pass streams from DRAM
_MEMBW_CHUNK = 32 * 1024 ** 2


def llc_bytes() -> int:
    """Size of the last-level cache from sysfs (largest cache of cpu0), or 32 MiB when unreadable."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        unit = 1024 ** " KMG".index(text[-1]) if text[-1] in "KMG" else 1
        digits = text.rstrip("KMGB")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes, default=_DEFAULT_LLC_BYTES)


def cpu_step() -> Callable[[], None]:
    """Transcendental maths on an array that stays in L1: busy cores, next to no memory traffic."""
    values = np.linspace(0.0, 1.0, 1024)

    def step() -> None:
        for _ in range(200):
            np.sin(values, out=values)

    return step


def membw_step() -> Callable[[], None]:
    """Copy successive 32 MiB chunks of a 256 MiB array: sequential streaming that saturates memory bandwidth."""
    source = np.ones(_MEMBW_BYTES // 8)
    target = np.empty(_MEMBW_CHUNK // 8)
    chunk = target.size
    offset = [0]

    def step() -> None:
        start = offset[0]
        np.copyto(target, source[start:start + chunk])
        offset[0] = (start + chunk) % (source.size - chunk)

    return step


def cache_step(buffer_bytes: int | None = None) -> Callable[[], None]:
    """Random gathers over a buffer the size of the LLC: evicts other processes' cache lines."""
    buffer = np.ones((buffer_bytes or llc_bytes()) // 8)
    # 8 x 64 Ki random indices touch about as many cache lines as the buffer has, in no predictable order
    indices = np.random.default_rng(0).integers(0, buffer.size, size=(8, 1 << 16))
    gathered = np.empty(indices.shape[1])

    def step() -> None:
        for row in indices:
            np.take(buffer, row, out=gathered)

    return step


STRESSORS: dict[str, Callable[[], Callable[[], None]]] = {"cpu": cpu_step, "membw": membw_step, "cache": cache_step}


def run_duty_cycle(step: Callable[[], None], duty: float, should_stop: Callable[[], bool],
                   period_s: float = PERIOD_S) -> int:
    """Run `step` for `duty` of every period until `should_stop()`; returns the number of steps run."""
    steps = 0
    period_start = time.perf_counter()
    while not should_stop():
        busy_until = period_start + duty * period_s
        while time.perf_counter() < busy_until and not should_stop():
            step()
            steps += 1
        period_start += period_s
        pause = period_start - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:  # a step longer than the period: start the next period now instead of catching up
            period_start = time.perf_counter()
    return steps
