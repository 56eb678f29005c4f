"""Measure real latencies: a protocol shared by all runtimes, each runtime timed in its own process."""

from hwlat.profilers._colocation import (ModelSpec, RecordResult, Scenario, WorkloadMix, export_colocation_dataset,
                                         import_colocation_dataset, load_colocation_dataset, record_colocation,
                                         scenarios_from)
from hwlat.profilers._perf_counters import PerfCounters, PerfEvent, parse_perf_event, resolve_perf_events
from hwlat.profilers._pressure import measure_pressure, record_pressure
from hwlat.profilers._profile import ProfileResult, platform_key, profile
from hwlat.profilers._protocol import MeasurementProtocol, TimingStats, measure, median_confidence_interval
from hwlat.profilers._timeslice import kernel_tick_ms, measure_time_slice_ms
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes import RUNTIMES, BaseRuntime, get_runtime

__all__ = ["RUNTIMES", "BaseRuntime", "MeasurementProtocol", "ModelSpec", "PerfCounters", "PerfEvent", "ProfileResult",
           "RecordResult", "Scenario", "TimingStats", "Workload", "WorkloadMix", "export_colocation_dataset",
           "get_runtime", "import_colocation_dataset", "kernel_tick_ms", "load_colocation_dataset", "measure",
           "measure_time_slice_ms", "measure_pressure", "median_confidence_interval", "parse_perf_event",
           "platform_key", "profile", "record_colocation", "record_pressure", "resolve_perf_events",
           "scenarios_from"]
