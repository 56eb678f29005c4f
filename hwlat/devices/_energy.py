"""Power readings of this machine: energy meters over the kernel's sensors, for energy per inference.

Linux exposes two kinds. Cumulative energy counters: RAPL zones under ``/sys/class/powercap`` (``energy_uj``,
wrapping at ``max_energy_range_uj``; Intel and AMD packages) and hwmon ``energyN_input`` (µJ, e.g. amd_energy).
Instantaneous power sensors: hwmon ``powerN_input`` (µW, e.g. INA3221 rails on Jetson boards, ACPI power
meters), sampled on a thread and integrated. A counter measures any interval exactly; a sensor only what its
sampling interval resolves.
"""

from __future__ import annotations

import abc
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hwlat._errors import HwlatError

T = TypeVar("T")
#: top-level RAPL zones (packages), not their sub-zones (``intel-rapl:0:0``, cores or dram, counted in the package)
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")
#: labels of hwmon inputs that cover the whole device (amd_energy's socket counter, a Jetson's board input rail):
#: "auto" takes those before per-core or per-rail inputs
_WHOLE_DEVICE = re.compile(r"socket|package|pkg|total|vdd_in\b", re.IGNORECASE)
#: interval (s) at which a power sensor is read; hwmon drivers refresh every few ms to a second
SAMPLE_INTERVAL_S = 0.005
#: what `find_energy_meter` accepts
METER_SPECS = "auto, powercap:ZONE_DIR, energy:FILE (cumulative µJ) or power:FILE (µW)"


def read_number(path: Path) -> float:
    """The number in a sysfs file; HwlatError names the file and why it cannot be read."""
    try:
        return float(path.read_text().strip())
    except PermissionError:
        raise HwlatError(f"cannot read {path}: permission denied (RAPL counters are readable by root only since "
                         f"Linux 5.10; grant read access, e.g. sudo chmod o+r {path})") from None
    except FileNotFoundError:
        raise HwlatError(f"cannot read {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise HwlatError(f"cannot read a number from {path}: {exc}") from None


class EnergyMeter(abc.ABC):
    """Energy the machine (or the part a sensor covers) used between `start` and `stop`, in joules."""

    #: what is measured, e.g. ``RAPL intel-rapl:0 (package-0)``, for reports
    name: str

    @abc.abstractmethod
    def start(self) -> None:
        """Begin an interval (one at a time)."""

    @abc.abstractmethod
    def stop(self) -> float:
        """End the interval: joules used since `start`."""

    def measure(self, work: Callable[[], T]) -> tuple[T, float]:
        """Run `work`; its result and the joules used meanwhile."""
        self.start()
        try:
            result = work()
        finally:
            joules = self.stop()
        return result, joules


class CounterMeter(EnergyMeter):
    """Cumulative µJ counters (summed, e.g. every RAPL package); a counter that wrapped once is unwrapped with its
    range, one that went backwards without a known range is an error."""

    def __init__(self, counters: Sequence[Path], ranges_uj: Sequence[float | None], name: str) -> None:
        if not counters or len(counters) != len(ranges_uj):
            raise ValueError("one range (or None) per counter is needed")
        self.counters = [Path(c) for c in counters]
        self.ranges_uj = list(ranges_uj)
        self.name = name
        self._start: list[float] | None = None

    def _read(self) -> list[float]:
        return [read_number(path) for path in self.counters]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        if self._start is None:
            raise HwlatError(f"energy meter {self.name}: stop without start")
        end, begin, self._start = self._read(), self._start, None
        total = 0.0
        for path, first, last, span in zip(self.counters, begin, end, self.ranges_uj):
            if last < first:
                if span is None:
                    raise HwlatError(f"energy counter {path} went backwards ({first:.0f} -> {last:.0f} µJ)")
                last += span
            total += last - first
        return total / 1e6


class SampledPowerMeter(EnergyMeter):
    """An instantaneous power sensor (µW) read every `interval_s` on a thread, integrated by the trapezoid rule."""

    def __init__(self, sensor: Path, name: str, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise HwlatError(f"sampling interval must be positive, got {interval_s}")
        self.sensor = Path(sensor)
        self.name = name
        self.interval_s = interval_s
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: HwlatError | None = None

    def _sample(self) -> None:
        self._samples.append((time.perf_counter(), read_number(self.sensor) / 1e6))

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._sample()
        except HwlatError as exc:
            self._error = exc

    def start(self) -> None:
        self._samples, self._error = [], None
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        if self._thread is None:
            raise HwlatError(f"energy meter {self.name}: stop without start")
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        self._sample()
        return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(self._samples, self._samples[1:]))


def _powercap_meter(zones: Sequence[Path]) -> CounterMeter:
    """A counter meter over RAPL zone directories (their ``energy_uj``, wrapping at ``max_energy_range_uj``)."""
    ranges = [read_number(zone / "max_energy_range_uj") if (zone / "max_energy_range_uj").exists() else None
              for zone in zones]
    labels = []
    for zone in zones:
        label = zone / "name"
        labels.append(f"{zone.name} ({label.read_text().strip()})" if label.exists() else zone.name)
    return CounterMeter([zone / "energy_uj" for zone in zones], ranges, f"RAPL {' + '.join(labels)}")


def _label(path: Path) -> str:
    """The hwmon input's label (``energy1_label`` beside ``energy1_input``), or "" without one."""
    label = path.with_name(path.name.replace("_input", "_label"))
    return label.read_text().strip() if label.exists() else ""


def _whole_device_first(inputs: Sequence[Path]) -> list[Path]:
    """hwmon inputs in path order, those labelled as whole-device totals first."""
    return sorted(inputs, key=lambda path: (not _WHOLE_DEVICE.search(_label(path)), str(path)))


def _sensor_name(path: Path) -> str:
    """E.g. ``hwmon3 ina3221 power1_input (VDD_IN)`` from the hwmon device's ``name`` and the input's label."""
    device, label = path.parent / "name", _label(path)
    parts = [path.parent.name, device.read_text().strip() if device.exists() else "", path.name,
             f"({label})" if label else ""]
    return " ".join(p for p in parts if p)


def _auto_meter(sys_root: Path, interval_s: float) -> EnergyMeter:
    """The first readable of: every RAPL package, an hwmon energy counter, an hwmon power sensor (whole-device
    inputs first: `_WHOLE_DEVICE`)."""
    powercap, hwmon = sys_root / "class" / "powercap", sys_root / "class" / "hwmon"
    zones = sorted(z for z in powercap.glob("intel-rapl:*") if _PACKAGE_ZONE.fullmatch(z.name)
                   and (z / "energy_uj").exists()) if powercap.is_dir() else []
    counters = _whole_device_first(hwmon.glob("hwmon*/energy*_input")) if hwmon.is_dir() else []
    sensors = _whole_device_first(hwmon.glob("hwmon*/power*_input")) if hwmon.is_dir() else []
    candidates: list[Callable[[], EnergyMeter]] = []
    if zones:
        candidates.append(lambda: _powercap_meter(zones))
    candidates += [lambda c=c: CounterMeter([c], [None], _sensor_name(c)) for c in counters]
    candidates += [lambda s=s: SampledPowerMeter(s, _sensor_name(s), interval_s) for s in sensors]
    if not candidates:
        raise HwlatError(f"no power reading on this machine: no RAPL zone under {powercap}, no energy*_input or "
                         f"power*_input under {hwmon}")
    reasons = []
    for make in candidates:
        try:
            meter = make()
            meter.start()
            meter.stop()
            return meter
        except HwlatError as exc:
            reasons.append(str(exc))
    raise HwlatError(f"no readable power reading: {reasons[0]}" + (f" (and {len(reasons) - 1} more)"
                                                                    if len(reasons) > 1 else ""))


def find_energy_meter(spec: str = "auto", sys_root: str | Path = "/sys",
                      interval_s: float = SAMPLE_INTERVAL_S) -> EnergyMeter:
    """An energy meter from `spec` (`METER_SPECS`); "auto" takes the first readable reading under `sys_root`.

    Explicit specs name a RAPL zone directory, a cumulative µJ counter file, or a µW power sensor file; each is
    read once here, so an unreadable one fails now, with the file named.
    """
    kind, _, where = spec.strip().partition(":")
    if kind == "auto" and not where:
        return _auto_meter(Path(sys_root), interval_s)
    if not where or kind not in ("powercap", "energy", "power"):
        raise HwlatError(f"energy meter {spec!r} is not one of {METER_SPECS}")
    path = Path(where)
    if not path.exists():
        raise HwlatError(f"energy meter {spec!r}: {path} does not exist")
    if kind == "powercap":
        if not (path / "energy_uj").exists():
            raise HwlatError(f"energy meter {spec!r}: {path} is not a powercap zone (no energy_uj)")
        meter: EnergyMeter = _powercap_meter([path])
    elif kind == "energy":
        meter = CounterMeter([path], [None], _sensor_name(path))
    else:
        meter = SampledPowerMeter(path, _sensor_name(path), interval_s)
    meter.start()
    meter.stop()
    return meter
