"""Hardware and kernel event counters through Linux perf_event_open, read whenever the metric sampler snapshots.

Events are named as `perf list` names them: generic hardware events (`cycles`, `instructions`, `cache-misses`),
hardware cache events (`LLC-load-misses`, `dTLB-load-misses`), software events (`context-switches`,
`cpu-migrations`), raw codes (`r01b7`) and events of a PMU in sysfs (`msr/tsc/`, `uncore_imc/cas_count_read/`,
`cpu/event=0x2e,umask=0x41/`, with the PMU's scale, so that e.g. memory traffic comes out in MiB). Each event is
counted system-wide on every CPU (on an uncore PMU, on the CPUs of its `cpumask`); a sampling window's count is
scaled by the time the counter ran over the time it was enabled, as `perf stat` does when the kernel multiplexes
more events than the PMU has counters.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwlat._errors import HwlatError

#: hardware events sampled with `perf_events="auto"` when the kernel accepts them (a VM often exposes no PMU)
AUTO_EVENTS = ("cycles", "instructions", "cache-references", "cache-misses", "LLC-loads", "LLC-load-misses",
               "branch-misses")
_SYSCALL = {"x86_64": 298, "i686": 336, "aarch64": 241, "armv7l": 364, "riscv64": 241, "ppc64le": 319,
            "s390x": 331}
_HARDWARE = {"cycles": 0, "cpu-cycles": 0, "instructions": 1, "cache-references": 2, "cache-misses": 3,
             "branch-instructions": 4, "branches": 4, "branch-misses": 5, "bus-cycles": 6,
             "stalled-cycles-frontend": 7, "stalled-cycles-backend": 8, "ref-cycles": 9}
_SOFTWARE = {"cpu-clock": 0, "task-clock": 1, "page-faults": 2, "faults": 2, "context-switches": 3, "cs": 3,
             "cpu-migrations": 4, "migrations": 4, "minor-faults": 5, "major-faults": 6, "alignment-faults": 7,
             "emulation-faults": 8}
_CACHES = {"L1-dcache": 0, "L1-icache": 1, "LLC": 2, "dTLB": 3, "iTLB": 4, "branch": 5, "node": 6}
_CACHE_OPS = {"loads": (0, 0), "load-misses": (0, 1), "stores": (1, 0), "store-misses": (1, 1),
              "prefetches": (2, 0), "prefetch-misses": (2, 1)}
_TYPE_HARDWARE, _TYPE_SOFTWARE, _TYPE_HW_CACHE, _TYPE_RAW = 0, 1, 3, 4
_READ_FORMAT = 1 | 2  # PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING: value, enabled, running
_ATTR = struct.Struct("<IIQQQQQIIQQ")  # perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1, 72 bytes)
_FD_CLOEXEC = 8
_SYSFS = Path("/sys/bus/event_source/devices")
_CPU_ONLINE = Path("/sys/devices/system/cpu/online")

#: per CPU (value, time enabled ns, time running ns) of one event at one instant
Reading = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class PerfEvent:
    """An event as perf_event_open takes it: type, config words, the scale of its unit, the CPUs it counts on."""

    name: str
    type: int
    config: int
    config1: int = 0
    config2: int = 0
    scale: float = 1.0
    cpus: tuple[int, ...] | None = None  # None: every online CPU

    @property
    def metric(self) -> str:
        """Column name of its rate in the metric series, e.g. ``perf_llc_load_misses_per_s``."""
        return "perf_" + re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_") + "_per_s"


def parse_perf_event(name: str, sysfs: Path = _SYSFS) -> PerfEvent:
    """A PerfEvent from a perf event name; HwlatError names what is unknown."""
    text = name.strip()
    if text in _HARDWARE:
        return PerfEvent(text, _TYPE_HARDWARE, _HARDWARE[text])
    if text in _SOFTWARE:
        return PerfEvent(text, _TYPE_SOFTWARE, _SOFTWARE[text])
    cache = re.fullmatch(rf"({'|'.join(map(re.escape, _CACHES))})-({'|'.join(_CACHE_OPS)})", text)
    if cache:
        op, result = _CACHE_OPS[cache[2]]
        return PerfEvent(text, _TYPE_HW_CACHE, _CACHES[cache[1]] | op << 8 | result << 16)
    if re.fullmatch(r"r[0-9a-fA-F]+", text):
        return PerfEvent(text, _TYPE_RAW, int(text[1:], 16))
    pmu = re.fullmatch(r"([\w.-]+)/([^/]*)/", text)
    if pmu:
        return _pmu_event(text, pmu[1], pmu[2], sysfs)
    raise HwlatError(f"perf event {text!r} is unknown: expected a perf name (cycles, LLC-load-misses, "
                     f"context-switches), a raw code (r01b7) or PMU/EVENT/ (msr/tsc/)")


def _pmu_event(text: str, pmu: str, terms: str, sysfs: Path) -> PerfEvent:
    """An event of a sysfs PMU: its terms (event aliases or key=value) packed into config words by its format."""
    folder = sysfs / pmu
    if not (folder / "type").is_file():
        raise HwlatError(f"perf event {text!r}: no PMU {pmu!r} here (known: "
                         f"{', '.join(sorted(p.name for p in sysfs.iterdir())) if sysfs.is_dir() else 'none'})")
    words = {"config": 0, "config1": 0, "config2": 0}
    scale = 1.0
    for term in (t.strip() for t in terms.split(",") if t.strip()):
        key, _, value = term.partition("=")
        if not value and (folder / "events" / key).is_file():  # an alias: its own terms, and perhaps a scale
            assignments = (folder / "events" / key).read_text().strip()
            scale_file = folder / "events" / f"{key}.scale"
            scale = float(scale_file.read_text()) if scale_file.is_file() else scale
        else:
            assignments = term
        for assignment in assignments.split(","):
            field, _, number = assignment.partition("=")
            _pack(words, folder, text, field.strip(), int(number, 0) if number else 1)
    mask = folder / "cpumask"
    cpus = _cpu_list(mask.read_text()) if mask.is_file() else None
    return PerfEvent(text, int((folder / "type").read_text()), words["config"], words["config1"], words["config2"],
                     scale, cpus)


def _pack(words: dict[str, int], folder: Path, text: str, field: str, value: int) -> None:
    """Put `value` into the bits its format file names, e.g. ``config:0-7,32-35`` (low bits first)."""
    fmt = folder / "format" / field
    if not fmt.is_file():
        raise HwlatError(f"perf event {text!r}: PMU {folder.name!r} has no term or event {field!r}")
    word, _, ranges = fmt.read_text().strip().partition(":")
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        width = int(high or low) - int(low) + 1
        words[word] |= (value & ((1 << width) - 1)) << int(low)
        value >>= width


def _cpu_list(text: str) -> tuple[int, ...]:
    """CPUs of a kernel cpu list such as ``0-3,8``."""
    cpus: list[int] = []
    for part in (p for p in text.strip().split(",") if p):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return tuple(cpus)


def _online_cpus() -> tuple[int, ...]:
    return _cpu_list(_CPU_ONLINE.read_text()) if _CPU_ONLINE.is_file() else tuple(range(os.cpu_count() or 1))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _open(event: PerfEvent, cpu: int) -> int:
    """A counting file descriptor of `event` on `cpu` (all processes); HwlatError says why the kernel refused."""
    number = _SYSCALL.get(platform.machine())
    if number is None:
        raise HwlatError(f"perf events: perf_event_open is not known on {platform.machine()!r}")
    attr = _ATTR.pack(event.type, _ATTR.size, event.config, 0, 0, _READ_FORMAT, 0, 0, 0, event.config1, event.config2)
    fd = _libc().syscall(number, ctypes.c_char_p(attr), ctypes.c_int(-1), ctypes.c_int(cpu), ctypes.c_int(-1),
                      ctypes.c_ulong(_FD_CLOEXEC))
    if fd >= 0:
        return fd
    code = ctypes.get_errno()
    if code in (errno.EACCES, errno.EPERM):
        paranoid = Path("/proc/sys/kernel/perf_event_paranoid")
        level = paranoid.read_text().strip() if paranoid.is_file() else "?"
        reason = f"permission denied (perf_event_paranoid is {level}; system-wide counting needs <= 0 or root)"
    elif code in (errno.ENOENT, errno.EOPNOTSUPP, errno.ENODEV):
        reason = "not supported here (no PMU exposes it; a VM often exposes none)"
    else:
        reason = os.strerror(code)
    raise HwlatError(f"perf event {event.name!r} on CPU {cpu}: {reason}")


class PerfCounters:
    """Counters of `events`, open system-wide until `close`; `read()` returns their raw per-CPU readings."""

    def __init__(self, events: Sequence[PerfEvent]) -> None:
        self.events = tuple(events)
        self._fds: dict[str, list[int]] = {}
        try:
            for event in self.events:
                self._fds[event.metric] = [_open(event, cpu) for cpu in (event.cpus or _online_cpus())]
        except HwlatError:
            self.close()
            raise

    def read(self) -> dict[str, Reading]:
        """Per event metric name, per CPU (value, time enabled, time running)."""
        return {metric: tuple(struct.unpack("<QQQ", os.read(fd, 24)) for fd in fds)
                for metric, fds in self._fds.items()}

    def close(self) -> None:
        for fds in self._fds.values():
            for fd in fds:
                os.close(fd)
        self._fds = {}

    def __enter__(self) -> PerfCounters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def counter_rates(before: Mapping[str, Reading], after: Mapping[str, Reading], seconds: float,
                  events: Iterable[PerfEvent]) -> dict[str, float]:
    """Events per second between two readings, each CPU's count scaled by enabled / running time (multiplexing).

    NaN for an event that never ran in the window (the PMU was busy with other events the whole time).
    """
    rates = {}
    for event in events:
        total, ran = 0.0, False
        for (value0, enabled0, running0), (value1, enabled1, running1) in zip(before[event.metric],
                                                                               after[event.metric]):
            running = running1 - running0
            if running > 0:
                total += (value1 - value0) * (enabled1 - enabled0) / running
                ran = True
        rates[event.metric] = total * event.scale / seconds if ran else float("nan")
    return rates


def _split_events(text: str) -> list[str]:
    """Event names of a comma-separated list; commas inside a PMU event's slashes belong to its terms."""
    return re.findall(r"[\w.-]+/[^/]*/|[^,]+", text)


def resolve_perf_events(spec: str | Sequence[str] | None) -> tuple[PerfEvent, ...]:
    """The events to sample: ``"auto"`` (those of `AUTO_EVENTS` the kernel accepts, maybe none), ``"none"`` or
    None (none), or a comma-separated string / list of names, each of which must open (HwlatError otherwise).
    """
    if spec is None or spec == "none":
        return ()
    if spec == "auto":
        accepted = []
        for event in map(parse_perf_event, AUTO_EVENTS):
            try:
                PerfCounters([event]).close()
            except HwlatError:
                continue
            accepted.append(event)
        return tuple(accepted)
    names = [n for n in (_split_events(spec) if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise HwlatError("perf events: give auto, none or a comma-separated list of event names")
    events = tuple(parse_perf_event(n) for n in names)
    PerfCounters(events).close()  # every event must open here, or the recording would lack its column
    return events


def hardware_counters_note(metric_columns: Iterable[str]) -> str:
    """For a data card: the perf columns a dataset holds, or that it holds none and what this machine's kernel
    would count."""
    sampled = [c for c in metric_columns if c.startswith("perf_")]
    if sampled:
        return ("sampled with perf_event_open, system-wide (every CPU), in events per second: "
                + ", ".join(f"`{c}`" for c in sampled))
    here = resolve_perf_events("auto")
    return ("none sampled (`perf_*` columns are absent); on the machine that exported this card the kernel "
            + (f"counts {', '.join(e.name for e in here)}" if here else
               f"counts none of {', '.join(AUTO_EVENTS)} (no PMU exposed, e.g. a VM)"))
