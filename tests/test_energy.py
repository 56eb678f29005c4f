"""Device energy: power readings on simulated sysfs trees, the device power model, energy in real split runs.

This machine has no power reading (a VM: no RAPL, no hwmon sensors), so the sensors are files written here the
way the kernel presents them; the split runs are real.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from hwlat._errors import HwlatError
from hwlat.devices import CounterMeter, SampledPowerMeter, find_energy_meter
from hwlat.split import (
    DevicePower,
    Hop,
    Link,
    Network,
    PlanCosts,
    analyze_split,
    device_energy_mj,
    parse_device_power,
    parse_side,
)
from hwlat.split._network import framed_bytes
from tests.test_split_cli import QUICK, SIDES, branchy, run_main  # noqa: F401 (fixture)


def write_value(path: Path, value: float) -> None:
    """Replace a sysfs-like file whole, as a reader must never see half a number."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{int(value)}\n")
    os.replace(temporary, path)


def rapl_zone(root: Path, name: str, label: str, energy_uj: float, range_uj: float) -> Path:
    zone = root / "class" / "powercap" / name
    zone.mkdir(parents=True)
    write_value(zone / "energy_uj", energy_uj)
    write_value(zone / "max_energy_range_uj", range_uj)
    (zone / "name").write_text(label + "\n")
    return zone


def hwmon_file(root: Path, device: str, name: str, value: float, driver: str = "ina3221") -> Path:
    folder = root / "class" / "hwmon" / device
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(driver + "\n")
    write_value(folder / name, value)
    return folder / name


class SimulatedCounter:
    """A cumulative µJ counter advanced by a thread at a constant `watts`, as RAPL's `energy_uj` is."""

    def __init__(self, path: Path, watts: float) -> None:
        self.path, self.watts = path, watts
        self.stopped = threading.Event()
        self.start = time.perf_counter()
        write_value(path, 0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.001):
            write_value(self.path, self.watts * 1e6 * (time.perf_counter() - self.start))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


def test_rapl_packages_are_summed_sub_zones_skipped_and_a_wrapped_counter_unwrapped(tmp_path):
    first = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 5_000_000, 262_143_328_850)
    second = rapl_zone(tmp_path, "intel-rapl:1", "package-1", 262_143_000_000, 262_143_328_850)
    rapl_zone(tmp_path, "intel-rapl:0:0", "core", 1_000_000, 262_143_328_850)
    meter = find_energy_meter("auto", sys_root=tmp_path)
    assert isinstance(meter, CounterMeter) and meter.name == "RAPL intel-rapl:0 (package-0) + intel-rapl:1 (package-1)"
    meter.start()
    write_value(first / "energy_uj", 6_500_000)  # +1.5 J
    write_value(second / "energy_uj", 1_171_150)  # wrapped: 328,850 to the range, then 1,171,150 = +1.5 J
    assert meter.stop() == pytest.approx(3.0)


def test_a_counter_that_goes_backwards_without_a_range_is_an_error(tmp_path):
    counter = hwmon_file(tmp_path, "hwmon2", "energy1_input", 9_000_000, driver="amd_energy")
    meter = find_energy_meter("auto", sys_root=tmp_path)
    assert meter.name == "hwmon2 amd_energy energy1_input"
    meter.start()
    write_value(counter, 8_000_000)
    with pytest.raises(HwlatError, match="went backwards"):
        meter.stop()


def test_a_power_sensor_is_sampled_and_integrated(tmp_path):
    sensor = hwmon_file(tmp_path, "hwmon1", "power1_input", 5_000_000)  # 5 W
    (sensor.parent / "power1_label").write_text("VDD_IN\n")
    meter = find_energy_meter("auto", sys_root=tmp_path, interval_s=0.002)
    assert isinstance(meter, SampledPowerMeter) and meter.name == "hwmon1 ina3221 power1_input (VDD_IN)"
    start = time.perf_counter()
    _, joules = meter.measure(lambda: time.sleep(0.2))
    assert joules == pytest.approx(5.0 * (time.perf_counter() - start), rel=0.05)

    def step_up() -> None:
        time.sleep(0.1)
        write_value(sensor, 15_000_000)  # 15 W for the second half

    _, joules = meter.measure(lambda: (threading.Thread(target=step_up).start(), time.sleep(0.2)))
    assert 1.6 < joules < 2.4  # 0.1 s at 5 W + 0.1 s at 15 W = 2 J, give or take the step's timing
    assert len(meter._samples) > 50  # sampled every 2 ms, not once at each end


def test_auto_prefers_rapl_then_energy_counters_then_power_sensors(tmp_path):
    hwmon_file(tmp_path, "hwmon0", "power1_input", 1_000_000)
    assert isinstance(find_energy_meter("auto", sys_root=tmp_path), SampledPowerMeter)
    hwmon_file(tmp_path, "hwmon3", "energy1_input", 1_000_000, driver="amd_energy")
    assert find_energy_meter("auto", sys_root=tmp_path).name == "hwmon3 amd_energy energy1_input"
    rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000, 2_000_000)
    assert find_energy_meter("auto", sys_root=tmp_path).name.startswith("RAPL intel-rapl:0")


def test_auto_takes_whole_device_inputs_before_cores_or_rails(tmp_path):
    for number, label in ((1, "Ecore000"), (2, "Ecore001"), (3, "Esocket0")):
        hwmon_file(tmp_path, "hwmon2", f"energy{number}_input", 1_000, driver="amd_energy")
        (tmp_path / "class" / "hwmon" / "hwmon2" / f"energy{number}_label").write_text(label + "\n")
    assert find_energy_meter("auto", sys_root=tmp_path).name == "hwmon2 amd_energy energy3_input (Esocket0)"
    for number, label in ((1, "VDD_GPU_SOC"), (2, "VDD_CPU_CV"), (3, "VDD_IN")):
        hwmon_file(tmp_path, "hwmon1", f"power{number}_input", 1_000_000)
        (tmp_path / "class" / "hwmon" / "hwmon1" / f"power{number}_label").write_text(label + "\n")
    for counter in (tmp_path / "class" / "hwmon" / "hwmon2").glob("energy*"):
        counter.unlink()  # sensors only now
    assert find_energy_meter("auto", sys_root=tmp_path).name == "hwmon1 ina3221 power3_input (VDD_IN)"


def test_unusable_readings_are_one_line_errors(tmp_path):
    with pytest.raises(HwlatError, match="no power reading on this machine: no RAPL zone under .*powercap, no "
                                         "energy\\*_input or power\\*_input under .*hwmon"):
        find_energy_meter("auto", sys_root=tmp_path)
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1, 2)
    (zone / "energy_uj").write_text("n/a\n")
    with pytest.raises(HwlatError, match="no readable power reading: cannot read a number from .*energy_uj"):
        find_energy_meter("auto", sys_root=tmp_path)
    for spec, message in (("rapl", "is not one of auto, powercap:"), ("power:", "is not one of"),
                          (f"power:{tmp_path}/missing", "does not exist"),
                          (f"powercap:{tmp_path}", "is not a powercap zone (no energy_uj)"),
                          (f"energy:{zone / 'energy_uj'}", "cannot read a number from")):
        with pytest.raises(HwlatError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
            find_energy_meter(spec, sys_root=tmp_path)
        assert "\n" not in str(error.value)


def test_explicit_readings(tmp_path):
    zone = rapl_zone(tmp_path, "intel-rapl:0:1", "dram", 10, 100)
    assert find_energy_meter(f"powercap:{zone}").name == "RAPL intel-rapl:0:1 (dram)"
    counter = hwmon_file(tmp_path, "hwmon4", "energy2_input", 10)
    assert isinstance(find_energy_meter(f"energy:{counter}"), CounterMeter)
    sensor = hwmon_file(tmp_path, "hwmon4", "power3_input", 10)
    assert isinstance(find_energy_meter(f"power:{sensor}"), SampledPowerMeter)


def test_device_power_specs():
    assert parse_device_power("compute=4.5W, idle=1200mW") == DevicePower(4.5, 1.2, 1.2, 1.2)
    assert parse_device_power("idle=1W,compute=3W,tx=2.5W,rx=1.5W") == DevicePower(3, 1, 2.5, 1.5)
    for spec, message in (("compute=4W", "idle missing"), ("tx=1W", "compute and idle missing"),
                          ("compute=4W,idle=1W,gpu=3W", "'gpu=3W' is not NAME=NUMBER"),
                          ("compute=4,idle=1W", "'compute=4' is not"), ("compute=-4W,idle=1W", "is not"),
                          ("compute=4W,idle=1W,idle=2W", "idle is given twice")):
        with pytest.raises(HwlatError, match=message):
            parse_device_power(spec)


def test_device_energy_counts_compute_radio_and_waiting():
    link = Link(10e6)
    network = Network.uniform(link, 2)
    costs = PlanCosts((2.0, 5.0), (Hop(12_500, 0.1, 0.2, 0, 1), Hop(40, 0.03, 0.05, 1, 0)), ("d", "s"))
    power = DevicePower(compute_w=4.0, idle_w=1.0, transmit_w=2.5, receive_w=1.5)
    send, receive = link.wire_ms(framed_bytes(12_500)), link.wire_ms(framed_bytes(40))
    busy = 2.0 + 0.1 + 0.05  # its segment, its encode of the sent message, its decode of the result
    expected = 4.0 * busy + 2.5 * send + 1.5 * receive + 1.0 * (20.0 - busy - send - receive)
    assert device_energy_mj(power, costs, network, 2.0, 20.0) == pytest.approx(expected)
    alone = PlanCosts((7.0,), (), ("d",))
    assert device_energy_mj(power, alone, network, 7.0, 7.0) == pytest.approx(28.0)


def test_device_energy_uses_the_devices_links():
    costs = PlanCosts((2.0, 5.0, 1.0), (Hop(12_500, 0.1, 0.2, 0, 1), Hop(100_000, 0.1, 0.1, 1, 2),
                                        Hop(40, 0.03, 0.05, 2, 0)), ("d", "s1", "s2"))
    power = DevicePower(compute_w=4.0, idle_w=1.0, transmit_w=2.5, receive_w=1.5)
    busy = 2.0 + 0.1 + 0.05

    def expected(send_bps: float, receive_bps: float) -> float:
        send, receive = Link(send_bps).wire_ms(framed_bytes(12_500)), Link(receive_bps).wire_ms(framed_bytes(40))
        return 4.0 * busy + 2.5 * send + 1.5 * receive + 1.0 * (30.0 - busy - send - receive)

    # the device sends on its link to s1 and receives on the return link (the first rate unless given)
    assert device_energy_mj(power, costs, Network.of([10e6, 1e9], 3), 2.0, 30.0) == pytest.approx(expected(10e6, 10e6))
    assert device_energy_mj(power, costs, Network.of([10e6, 1e5], 3), 2.0, 30.0) == pytest.approx(expected(10e6, 10e6))
    slow_back = Network.of([10e6, 1e9, 1e5], 3)  # 48 bytes back at 100 kbps: 3.84 ms receiving instead of 0.04
    assert device_energy_mj(power, costs, slow_back, 2.0, 30.0) == pytest.approx(expected(10e6, 1e5))
    assert expected(10e6, 1e5) - expected(10e6, 10e6) == pytest.approx(0.5 * 3.8016)


def test_split_energy_with_a_simulated_rapl_counter(branchy, tmp_path):  # noqa: F811 (fixture)
    zone = rapl_zone(tmp_path, "intel-rapl:0", "package-0", 0, 2**40)
    counter = SimulatedCounter(zone / "energy_uj", watts=3.0)
    try:
        meter = find_energy_meter("auto", sys_root=tmp_path)
        result = analyze_split(f"onnx:{branchy}", [parse_side(s) for s in ("onnxruntime/t1/opt-disable@1",
                                                                          "onnxruntime/t1@0")],
                               [1e9], verify="all", stream_seconds=0.2, device_power="measure", energy_meter=meter,
                               **QUICK)
    finally:
        counter.close()
    power = result.settings["device_power"]
    assert power["compute_w"] == pytest.approx(3.0, rel=0.1) and power["idle_w"] == pytest.approx(3.0, rel=0.1)
    assert power["source"] == "measured with RAPL intel-rapl:0 (package-0)"
    table = result.table
    # a device drawing 3 W whatever it does uses 3 W x its latency per input, predicted and measured
    assert (table["device_energy_mj"] / table["latency_ms"]).between(2.7, 3.3).all()
    per_input_ms = table["measured_device_energy_mj"] / 3.0
    assert (per_input_ms / table["measured_latency_ms"]).between(0.5, 2.0).all()
    assert table["energy_error"].notna().all()
    written = result.report(str(tmp_path / "split"))
    front = json.loads((tmp_path / "split-1Gbps.json").read_text())
    assert [o["column"] for o in front["objectives"]] == ["latency_ms", "throughput_per_s", "device_energy_mj"]
    assert front["settings"]["lowest_device_energy"] in set(table["plan"])
    assert len(written) == 5


def test_cli_predicts_device_energy_from_declared_power(monkeypatch, capsys, branchy):  # noqa: F811 (fixture)
    code, out, err = run_main(monkeypatch, capsys, "split", "--model", f"onnx:{branchy}", *SIDES, "--bandwidth",
                              "1Mbps", "--time-budget", "0.1", "--device-power", "compute=4W,idle=1W,tx=2W", "--json")
    assert code == 0, err
    plans = json.loads(out)["plans"]
    alone = next(p for p in plans if " | " not in p["plan"])
    assert alone["device_energy_mj"] == pytest.approx(4.0 * alone["latency_ms"])
    offloaded = next(p for p in plans if p["plan"].startswith("device[0:0] |"))
    # sending the input at 1 Mbps costs tx power for its wire time, then the device mostly waits at 1 W
    assert 1.0 * offloaded["latency_ms"] < offloaded["device_energy_mj"] < 2.0 * offloaded["latency_ms"]
    assert json.loads(out)["settings"]["device_power"]["transmit_w"] == 2.0


@pytest.mark.parametrize("args, message", [
    (["--device-power", "compute=4W"], "idle missing"),
    (["--device-power", "lots"], "'lots' is not NAME=NUMBER"),
    (["--energy-meter", "rapl"], "energy meter 'rapl' is not one of"),
    (["--energy-meter", "power:/nonexistent/power1_input"], "does not exist"),
])
def test_bad_energy_options_are_one_line_errors(monkeypatch, capsys, args, message):
    code, _, err = run_main(monkeypatch, capsys, "split", "--model", "resnet:18", *args)
    assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
