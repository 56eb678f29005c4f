"""The scheduler's time slice on this machine: how long a CPU-bound process runs before a competitor gets its core.

A target that shares its core with a CPU-bound co-runner is preempted once per slice and then waits a whole slice,
so the slice sets the slowdown (`hwlat.interference`, the "slice" descriptors). It depends on the kernel (its tick,
CONFIG_HZ, and the scheduler's base slice), so the recorder measures it and stores it with every scenario: a probe
process pinned to one core beside a CPU-bound spinner on the same core records how long it is kept off the core.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import platform
import re
import time
from pathlib import Path

from hwlat._errors import HwlatError
from hwlat.profilers._colocation_child import _die_with_parent

#: a pause of the probe's clock loop longer than this is time the core was given to the spinner
_GAP_S = 2e-4
#: how long the probe waits for the spinner to start taking the core
_START_WAIT_S = 30.0


def _spin(cpu: int, seconds: float, parent: int) -> None:
    _die_with_parent(parent)
    os.sched_setaffinity(0, {cpu})
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _probe(cpu: int, seconds: float, answer, parent: int) -> None:
    """Run on `cpu` beside the spinner; from the first time it is kept off the core (the spinner runs), send the
    off-core gaps (s) of a tight clock loop over `seconds`."""
    _die_with_parent(parent)
    os.sched_setaffinity(0, {cpu})
    gaps: list[float] = []
    now = last = time.perf_counter()
    end = now + _START_WAIT_S
    while now < end:
        now = time.perf_counter()
        if now - last > _GAP_S:
            if not gaps:
                end = now + seconds
            gaps.append(now - last)
        last = now
    answer.send(gaps[1:])


def measure_time_slice_ms(cpu: int | None = None, seconds: float = 0.5) -> float:
    """Median time (ms) a CPU-bound process keeps core `cpu` (default: the lowest this process may use) from a
    CPU-bound competitor, over `seconds` of probing (about 125 slices of 4 ms per second). Takes about
    `seconds` + 1.5 s (two processes start); the core should be otherwise idle (other work there lengthens the gaps)."""
    if not seconds > 0:
        raise HwlatError(f"the time-slice probe needs a positive duration, got {seconds} s")
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed) if cpu is None else cpu
    if cpu not in allowed:
        raise HwlatError(f"cannot measure the time slice on CPU {cpu}: this process may use {sorted(allowed)}")
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    processes = [context.Process(target=_spin, args=(cpu, seconds + _START_WAIT_S + 30.0, os.getpid()), daemon=True),
                 context.Process(target=_probe, args=(cpu, seconds, sender, os.getpid()), daemon=True)]
    try:
        for process in processes:
            process.start()
        sender.close()
        if not receiver.poll(seconds + _START_WAIT_S + 30.0):
            raise HwlatError(f"the time-slice probe on CPU {cpu} gave no answer")
        gaps = receiver.recv()
    except EOFError:
        raise HwlatError(f"the time-slice probe on CPU {cpu} died (exit code {processes[1].exitcode})") from None
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
    if len(gaps) < 3:
        raise HwlatError(f"the time-slice probe on CPU {cpu} was preempted only {len(gaps)} times in {seconds} s")
    gaps.sort()
    return gaps[len(gaps) // 2] * 1e3


def kernel_tick_ms() -> float | None:
    """1000 / CONFIG_HZ of the running kernel (from /proc/config.gz or /boot/config-<release>), None if unreadable."""
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{platform.release()}")):
        try:
            text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        except OSError:
            continue
        match = re.search(r"^CONFIG_HZ=(\d+)$", text, re.MULTILINE)
        if match:
            return 1000.0 / int(match.group(1))
    return None
