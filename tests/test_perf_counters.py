"""perf event counters: event names to perf_event_open attributes, counting on this machine, rates per window."""

from __future__ import annotations

import math
import os
import time

import pytest

from hwlat._errors import HwlatError
from hwlat.profilers._perf_counters import (PerfCounters, PerfEvent, counter_rates, hardware_counters_note,
                                            parse_perf_event, resolve_perf_events)
from hwlat.profilers._perf_counters import _SYSFS as SYSFS
from hwlat.profilers._perf_counters import _online_cpus
from hwlat.profilers._sysmetrics import sample_series


@pytest.mark.parametrize("name, kind, config", [
    ("cycles", 0, 0), ("instructions", 0, 1), ("branch-misses", 0, 5), ("ref-cycles", 0, 9),
    ("LLC-load-misses", 3, 2 | 0 << 8 | 1 << 16), ("LLC-loads", 3, 2),
    ("L1-dcache-store-misses", 3, 0 | 1 << 8 | 1 << 16),
    ("dTLB-prefetches", 3, 3 | 2 << 8), ("context-switches", 1, 3), ("cpu-migrations", 1, 4), ("task-clock", 1, 1),
    ("r01b7", 4, 0x1B7),
])
def test_perf_names_become_the_kernel_attributes(name, kind, config):
    event = parse_perf_event(name)
    assert (event.type, event.config, event.scale, event.cpus) == (kind, config, 1.0, None)


def _fake_pmu(root, name="uncore_imc", pmu_type=17):
    pmu = root / name
    (pmu / "format").mkdir(parents=True)
    (pmu / "events").mkdir()
    (pmu / "type").write_text(f"{pmu_type}\n")
    (pmu / "cpumask").write_text("0,2-3\n")
    (pmu / "format" / "event").write_text("config:0-7\n")
    (pmu / "format" / "umask").write_text("config:8-15\n")
    (pmu / "format" / "split").write_text("config1:0-3,32-35\n")  # a field in two bit ranges, low bits first
    (pmu / "events" / "cas_count_read").write_text("event=0x04,umask=0x03\n")
    (pmu / "events" / "cas_count_read.scale").write_text("6.103515625e-5\n")
    return pmu


def test_sysfs_pmu_events_pack_their_terms_by_the_format_files(tmp_path):
    _fake_pmu(tmp_path)
    event = parse_perf_event("uncore_imc/cas_count_read/", sysfs=tmp_path)
    assert (event.type, event.config, event.scale, event.cpus) == (17, 0x0304, 6.103515625e-5, (0, 2, 3))
    assert event.metric == "perf_uncore_imc_cas_count_read_per_s"
    event = parse_perf_event("uncore_imc/event=0x2e,umask=0x41,split=0xab/", sysfs=tmp_path)
    assert (event.config, event.config1, event.scale) == (0x412E, 0xB | 0xA << 32, 1.0)
    with pytest.raises(HwlatError, match="PMU 'uncore_imc' has no term or event 'bogus'"):
        parse_perf_event("uncore_imc/bogus/", sysfs=tmp_path)
    with pytest.raises(HwlatError, match=r"no PMU 'nope' here \(known: uncore_imc\)"):
        parse_perf_event("nope/x/", sysfs=tmp_path)


@pytest.mark.parametrize("spec, message", [
    ("foo", "perf event 'foo' is unknown"), ("LLC-misses-please", "is unknown"), (",", "give auto, none or"),
])
def test_bad_event_names_are_one_line_errors(spec, message):
    with pytest.raises(HwlatError, match=message) as error:
        resolve_perf_events(spec)
    assert "\n" not in str(error.value)


def test_an_event_the_kernel_refuses_says_so():
    with pytest.raises(HwlatError, match=r"perf event 'made-up' on CPU \d+: not supported here"):
        PerfCounters([PerfEvent("made-up", type=4242, config=0)])


def test_rates_scale_by_the_time_each_counter_ran():
    event = PerfEvent("x", 1, 0)
    before = {event.metric: ((100, 0, 0), (0, 0, 0))}
    after = {event.metric: ((300, 10, 5), (50, 10, 10))}  # CPU 0 counted half the window: 200 seen -> 400
    assert counter_rates(before, after, 0.5, [event]) == {event.metric: (400 + 50) / 0.5}
    idle = {event.metric: ((300, 10, 0), (0, 10, 0))}  # never scheduled on the PMU: unknown, not zero
    assert math.isnan(counter_rates(before, idle, 0.5, [event])[event.metric])
    scaled = PerfEvent("y", 1, 0, scale=0.5)
    assert counter_rates({scaled.metric: ((0, 0, 0),)}, {scaled.metric: ((10, 1, 1),)}, 1.0, [scaled]) == {
        scaled.metric: 5.0}


def test_counting_on_this_machine_follows_the_clock():
    """Software events count everywhere perf_event_open exists: task-clock system-wide is one second per CPU and
    second, and a thread that sleeps and wakes causes context switches."""
    events = resolve_perf_events("task-clock,context-switches")
    assert [e.name for e in events] == ["task-clock", "context-switches"]
    with PerfCounters(events) as counters:
        before, start = counters.read(), time.perf_counter()
        for _ in range(20):
            time.sleep(0.005)
        after, seconds = counters.read(), time.perf_counter() - start
    rates = counter_rates(before, after, seconds, events)
    assert rates["perf_task_clock_per_s"] == pytest.approx(len(_online_cpus()) * 1e9, rel=0.05)
    assert rates["perf_context_switches_per_s"] >= 20 / seconds


def test_sampled_series_carry_the_counter_rates():
    with PerfCounters(resolve_perf_events(["task-clock"])) as counters:
        rows = sample_series(time.perf_counter() + 0.02, duration_s=0.3, interval_s=0.05, counters=counters)
    assert len(rows) == 6
    for row in rows:
        assert row["perf_task_clock_per_s"] == pytest.approx(len(_online_cpus()) * 1e9, rel=0.1)
    assert "perf_task_clock_per_s" not in sample_series(time.perf_counter(), 0.05, 0.05)[0]


def test_auto_keeps_only_the_events_the_kernel_counts_and_the_card_says_what():
    auto = resolve_perf_events("auto")
    assert resolve_perf_events("none") == resolve_perf_events(None) == ()
    with PerfCounters(auto):  # every event auto keeps opens here
        pass
    note = hardware_counters_note(["cpu_util_mean"])
    assert note.startswith("none sampled") and (("counts none of" in note) == (not auto))
    assert hardware_counters_note(["perf_llc_load_misses_per_s"]).endswith("`perf_llc_load_misses_per_s`")
    assert os.cpu_count() >= len(_online_cpus()) >= 1


def test_a_sysfs_pmu_event_counts_where_the_pmu_exists():
    """x86 kernels expose the `msr` PMU even in VMs: its `tsc` event counts the time-stamp counter, a steady rate
    per CPU (this VM has it; a machine without the PMU has nothing to count here)."""
    if not (SYSFS / "msr" / "events" / "tsc").is_file():
        pytest.skip("no msr PMU with a tsc event on this machine")
    events = resolve_perf_events("msr/tsc/")
    assert events[0].type == int((SYSFS / "msr" / "type").read_text())
    with PerfCounters(events) as counters:
        readings = [counters.read()]
        stamps = [time.perf_counter()]
        for _ in range(2):
            time.sleep(0.1)
            readings.append(counters.read())
            stamps.append(time.perf_counter())
    rates = [counter_rates(a, b, t1 - t0, events)["perf_msr_tsc_per_s"] / len(events[0].cpus or _online_cpus())
             for a, b, t0, t1 in zip(readings, readings[1:], stamps, stamps[1:])]
    assert 1e8 < rates[0] < 1e10 and rates[1] == pytest.approx(rates[0], rel=0.05)  # a clock: the same rate
