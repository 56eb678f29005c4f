"""Device energy per input of a split plan: a power model of the device (Neurosurgeon's), declared or measured.

While one input goes round, the device draws `compute_w` while it runs its segment and codes messages,
`transmit_w` / `receive_w` while its messages are on the link (its sends on the link to s1, its receives on the
network's return link: each at that link's rate), and `idle_w` for the rest of the end-to-end latency (waiting
for the servers). Watts x milliseconds = millijoules.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from hwlat._errors import HwlatError
from hwlat.devices._energy import EnergyMeter
from hwlat.split._network import Network
from hwlat.split._objectives import PlanCosts, hop_wire_ms

_TERM = re.compile(r"\s*(compute|idle|tx|rx)\s*=\s*([0-9]*\.?[0-9]+)\s*(mW|W)\s*", re.IGNORECASE)
#: what `parse_device_power` accepts
POWER_SPEC = "compute=WATTS,idle=WATTS[,tx=WATTS,rx=WATTS] (e.g. compute=4.5W,idle=1.2W,tx=2W,rx=1.5W) or measure"


@dataclass(frozen=True)
class DevicePower:
    """The device's power draw (W) computing, idle, and with its radio sending / receiving."""

    compute_w: float
    idle_w: float
    transmit_w: float
    receive_w: float
    #: where the figures come from: "declared", or the meter that measured them
    source: str = "declared"

    def __post_init__(self) -> None:
        for name in ("compute_w", "idle_w", "transmit_w", "receive_w"):
            value = getattr(self, name)
            if not value >= 0 or value == float("inf"):
                raise HwlatError(f"device power {name} must be a finite number >= 0 W, got {value}")

    def as_dict(self) -> dict:
        return {"compute_w": self.compute_w, "idle_w": self.idle_w, "transmit_w": self.transmit_w,
                "receive_w": self.receive_w, "source": self.source}


def parse_device_power(text: str) -> DevicePower:
    """A DevicePower from ``compute=4.5W,idle=1.2W[,tx=2W,rx=1.5W]``; tx and rx default to idle (a wired link
    whose transfers cost the device nothing beyond waiting)."""
    values: dict[str, float] = {}
    for term in text.split(","):
        match = _TERM.fullmatch(term)
        if not match:
            raise HwlatError(f"device power {text!r}: {term.strip()!r} is not NAME=NUMBER(W|mW); expected {POWER_SPEC}")
        name = match[1].lower()
        if name in values:
            raise HwlatError(f"device power {text!r}: {name} is given twice")
        values[name] = float(match[2]) / (1e3 if match[3].lower() == "mw" else 1.0)
    missing = [name for name in ("compute", "idle") if name not in values]
    if missing:
        raise HwlatError(f"device power {text!r}: {' and '.join(missing)} missing; expected {POWER_SPEC}")
    return DevicePower(values["compute"], values["idle"], values.get("tx", values["idle"]),
                       values.get("rx", values["idle"]))


def device_energy_mj(power: DevicePower, costs: PlanCosts, network: Network, device_compute_ms: float,
                     latency_ms: float) -> float:
    """Device energy (mJ) of one input of a plan on `network` whose end-to-end latency is `latency_ms`;
    `device_compute_ms` is the device segment's time as run in that latency (after its idle wait)."""
    busy = device_compute_ms + sum(h.encode_ms for h in costs.hops if h.sender == 0)
    busy += sum(h.decode_ms for h in costs.hops if h.receiver == 0)
    sending = sum(hop_wire_ms(h, network) for h in costs.hops if h.sender == 0)
    receiving = sum(hop_wire_ms(h, network) for h in costs.hops if h.receiver == 0)
    idle = max(0.0, latency_ms - busy - sending - receiving)
    return (power.compute_w * busy + power.transmit_w * sending + power.receive_w * receiving
            + power.idle_w * idle)


def measure_device_power(meter: EnergyMeter, run_device: Callable[[float], object],
                         seconds: float = 1.0) -> DevicePower:
    """Idle and compute power from `meter`: over `seconds` of sleep, then over `run_device(seconds)` (the device
    side running its whole model back to back for that long). Transmit and receive are set to idle: loopback
    has no radio."""
    if seconds <= 0:
        raise HwlatError(f"power calibration needs a positive duration, got {seconds} s")
    idle_w = _watts(meter, lambda: time.sleep(seconds))
    compute_w = _watts(meter, lambda: run_device(seconds))
    return DevicePower(compute_w, idle_w, idle_w, idle_w, source=f"measured with {meter.name}")


def _watts(meter: EnergyMeter, work: Callable[[], object]) -> float:
    """Mean power (W) while `work` runs."""
    start = time.perf_counter()
    _, joules = meter.measure(work)
    return joules / (time.perf_counter() - start)
