"""Record co-location scenarios: a target's latencies alone, beside co-runners and alone again, with system metrics.

Every target and co-runner runs in its own process and session (`ChildProcess`), so the recorder decides when
they stop: on normal exit, on an exception, on Ctrl-C and on SIGTERM they get end of input, then SIGTERM, then
SIGKILL for their whole process group. Co-runner processes are reused across the scenarios of one workload and
target processes across workloads (both per placement); they idle between phases. Each scenario is committed
whole, so a rerun resumes with the first scenario that is not stored.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from hwlat._errors import HwlatError
from hwlat.profilers._colocation_dataset import (export_colocation_dataset, import_colocation_dataset,
                                                 load_colocation_dataset)
from hwlat.profilers._colocation_spec import PASSIVE_ENV, ModelSpec, Scenario, WorkloadMix, scenarios_from
from hwlat.profilers._perf_counters import PerfCounters, resolve_perf_events
from hwlat.profilers._sysmetrics import metrics_between, sample_series, snapshot
from hwlat.profilers._timeslice import measure_time_slice_ms
from hwlat.profilers._worker import THREAD_ENV_VARS
from hwlat.store._colocation import PHASES, ColocationStore

__all__ = ["ModelSpec", "RecordResult", "Scenario", "WorkloadMix", "export_colocation_dataset",
           "import_colocation_dataset", "load_colocation_dataset", "record_colocation", "scenarios_from"]

#: time between sending a phase's start time and the start itself, so every process is waiting when it comes
LEAD_S = 0.05
STARTUP_TIMEOUT_S = 300.0
KEPT_TARGETS = 16


class ChildProcess:
    """A target or co-runner process in its own session, speaking JSON lines (see `_colocation_child`).

    With `cpus` the process is pinned to them and its runtime threads wait passively (`PASSIVE_ENV`).
    """

    def __init__(self, spec: dict, threads: int, label: str, cpus: tuple[int, ...] | None = None) -> None:
        self.label = label
        env = {**os.environ, **{name: str(threads) for name in THREAD_ENV_VARS}, **(PASSIVE_ENV if cpus else {})}
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hwlat.profilers._colocation_child"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1, start_new_session=True, env=env)
        self._answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"hwlat-child-{self.process.pid}").start()
        if cpus:
            model = spec.get("model") or {}
            spec = {**spec, "cpus": list(cpus),
                    "runtime_settings": {"spinning": False} if model.get("runtime") == "onnxruntime" else {}}
        self.send({**spec, "parent": os.getpid()})

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                self._answers.put(json.loads(line))
        except (ValueError, OSError):
            pass
        self._answers.put(None)

    def send(self, message: dict) -> None:
        """Write one command; a dead process is reported by the next `receive`."""
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def receive(self, timeout_s: float, what: str) -> dict:
        """The next answer; HwlatError if the process reports an error, dies or stays silent for `timeout_s`."""
        try:
            answer = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            raise HwlatError(f"{self.label} gave no answer within {timeout_s:.0f} s ({what})") from None
        if answer is None:
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            raise HwlatError(f"{self.label} exited during {what} (exit code {code}){self._last_log_line()}")
        if "error" in answer:
            raise HwlatError(f"{self.label}: {answer['error']}")
        return answer

    def _last_log_line(self) -> str:
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().splitlines() if line.strip()]
        return f": {lines[-1]}" if lines else ""

    def close_input(self) -> None:
        try:
            self.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def signal_group(self, signum: int) -> None:
        """Signal the process group while its leader is unreaped (so the group id is certainly still ours)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass


def stop_children(children: Sequence[ChildProcess], grace_s: float = 1.0, term_s: float = 2.0) -> None:
    """End of input for all, then SIGTERM to the groups still running after `grace_s`, then SIGKILL; reaps all."""
    for child in children:
        child.close_input()
    for signum, wait_s in ((None, grace_s), (signal.SIGTERM, term_s), (signal.SIGKILL, 10.0)):
        running = [child for child in children if child.process.poll() is None]
        if not running:
            break
        for child in running:
            if signum is not None:
                child.signal_group(signum)
        deadline = time.monotonic() + wait_s
        for child in running:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for child in children:
        child._log.close()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """In the main thread, SIGTERM raises KeyboardInterrupt so the same clean-up runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Target:
    child: ChildProcess
    facts: dict


def _key(name: str, scenario: Scenario) -> str:
    """Which running process can serve `scenario`: same target or workload `name`, same placement."""
    return f"{name} [{scenario.placement}]"


class _Processes:
    """Target processes by label and placement (the most recent `KEPT_TARGETS` kept) and the co-runner processes
    of one workload and placement."""

    def __init__(self) -> None:
        self.targets: OrderedDict[str, _Target] = OrderedDict()
        self.workload = ""
        self.corunners: list[ChildProcess] = []

    def ready(self, scenario: Scenario) -> tuple[_Target, list[ChildProcess]]:
        """Start the processes `scenario` needs that are not running yet, all at once, then wait until each loaded."""
        starting = []
        target_cpus, corunner_cpus = scenario.cpus(sorted(os.sched_getaffinity(0)))
        if self.workload != _key(scenario.workload.name, scenario):
            self.drop_corunners()
            for corunner, cpus in zip(scenario.corunners, corunner_cpus):
                spec = {"kind": corunner.kind, "model": asdict(corunner.model) if corunner.model else None}
                self.corunners.append(ChildProcess(spec, corunner.threads, f"co-runner {corunner.as_dict()['name']}",
                                                   cpus))
            self.workload = _key(scenario.workload.name, scenario)
            starting += self.corunners
        model, key = scenario.target, _key(scenario.target.label, scenario)
        if key in self.targets:
            self.targets.move_to_end(key)
        else:
            while len(self.targets) >= KEPT_TARGETS:
                stop_children([self.targets.popitem(last=False)[1].child])
            child = ChildProcess({"kind": "model", "model": asdict(model)}, model.threads, f"target {model.label}",
                                 target_cpus)
            self.targets[key] = _Target(child, {})  # registered at once, so an interrupt stops it
            starting.append(child)
        target = self.targets[key]
        for child in starting:
            answer = child.receive(STARTUP_TIMEOUT_S, "start-up")
            if child is target.child:
                target.facts = answer
        return target, self.corunners

    def drop_target(self, scenario: Scenario) -> None:
        target = self.targets.pop(_key(scenario.target.label, scenario), None)
        if target is not None:
            stop_children([target.child])

    def drop_corunners(self) -> None:
        stop_children(self.corunners)
        self.corunners, self.workload = [], ""

    def children(self) -> list[ChildProcess]:
        return [target.child for target in self.targets.values()] + self.corunners

    def close(self) -> None:
        stop_children(self.children())
        self.targets.clear()
        self.corunners, self.workload = [], ""


def wait_for_quiet(threshold: float, max_wait_s: float, window_s: float = 0.5) -> float:
    """Wait (at most `max_wait_s`) until the mean CPU utilisation over `window_s` is at most `threshold`.

    Called while every target and co-runner idles, so what it sees is other work on the machine; returns the
    last utilisation measured (stored as the scenario's `background_util`).
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = snapshot()
        time.sleep(window_s)
        util = metrics_between(before, snapshot())["cpu_util_mean"]
        if util <= threshold or time.monotonic() >= deadline:
            return util


@dataclass
class RecordResult:
    """What one `record_colocation` call did; every recorded scenario is already in the store."""

    db: str
    device_id: str
    recorded: int = 0
    skipped: int = 0
    disturbed: int = 0
    remaining: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: the scheduler's time slice measured before recording (stored with every scenario); None if nothing to record
    time_slice_ms: float | None = None
    #: the perf events sampled with the system metrics (their `perf_*_per_s` columns)
    perf_events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"db": self.db, "device_id": self.device_id, "recorded": self.recorded, "skipped": self.skipped,
                "disturbed": self.disturbed, "remaining": self.remaining, "time_slice_ms": self.time_slice_ms,
                "perf_events": self.perf_events,
                "failed": [{"scenario": s, "error": e} for s, e in self.failed]}


def record_colocation(
    scenarios: Sequence[Scenario],
    *,
    store: ColocationStore | str | None = None,
    tolerance: float = 0.1,
    max_attempts: int = 3,
    quiet_threshold: float = 0.25,
    quiet_wait_s: float = 30.0,
    time_limit_s: float | None = None,
    perf_events: str | Sequence[str] | None = "auto",
    on_start: Callable[[int, int], None] | None = None,
    on_scenario: Callable[[Scenario, dict], None] | None = None,
) -> RecordResult:
    """Record every scenario not yet stored for this machine, grouped by workload, and commit each one whole.

    A scenario whose isolated medians before and after differ by more than `tolerance` is retried up to
    `max_attempts` times in all and stored with `disturbed=1` if no attempt was clean. Before each attempt the
    recorder waits up to `quiet_wait_s` for the machine's other work to use at most `quiet_threshold` of the
    cores (see `wait_for_quiet`). After `time_limit_s`
    seconds no new scenario is started (the rest is counted in `remaining`; rerun to continue). `perf_events`:
    hardware counters sampled with the system metrics (`resolve_perf_events`: "auto", "none" or event names).
    `on_start(total, skipped)` and `on_scenario(scenario, row_or_error)` report progress.
    """
    from hwlat.devices import local_device

    if not tolerance > 0 or max_attempts < 1:
        raise HwlatError(f"tolerance must be positive and attempts >= 1, got {tolerance} and {max_attempts}")
    if not (0 < quiet_threshold <= 1 and quiet_wait_s >= 0):
        raise HwlatError(f"quiet threshold must be in (0, 1] and its wait >= 0 s, got {quiet_threshold} and "
                         f"{quiet_wait_s}")
    if time_limit_s is not None and not time_limit_s > 0:
        raise HwlatError(f"time limit must be a positive number of seconds, got {time_limit_s}")
    wanted = list({s.scenario_id: s for s in scenarios}.values())
    if not wanted:
        raise HwlatError("no scenarios to record")
    events = resolve_perf_events(perf_events)
    device = local_device()
    owned = not isinstance(store, ColocationStore)
    store = ColocationStore(store) if owned else store
    try:
        done = store.completed_scenarios(device.id)
        todo = [s for s in wanted if s.scenario_id not in done]
        order = list(dict.fromkeys(s.workload.name for s in todo))
        todo.sort(key=lambda s: order.index(s.workload.name))  # one co-runner start per workload
        result = RecordResult(db=store.url, device_id=device.id, skipped=len(wanted) - len(todo),
                              perf_events=[e.name for e in events])
        if todo:
            store.add_device(device)
            wait_for_quiet(quiet_threshold, quiet_wait_s)
            result.time_slice_ms = measure_time_slice_ms()
        if on_start:
            on_start(len(wanted), result.skipped)
        started = time.monotonic()
        with _sigterm_as_interrupt(), ExitStack() as stack:
            processes = _Processes()
            stack.callback(processes.close)
            counters = stack.enter_context(PerfCounters(events)) if events else None
            for index, scenario in enumerate(todo):
                if time_limit_s is not None and time.monotonic() - started > time_limit_s:
                    result.remaining = len(todo) - index
                    break
                answer = _record_one(scenario, processes, store, device.id, tolerance, max_attempts,
                                     lambda: wait_for_quiet(quiet_threshold, quiet_wait_s), result.time_slice_ms,
                                     counters)
                if "error" in answer:
                    result.failed.append((f"{scenario.target.label} | {scenario.workload.name}", answer["error"]))
                else:
                    result.recorded += 1
                    result.disturbed += answer["disturbed"]
                if on_scenario:
                    on_scenario(scenario, answer)
        return result
    finally:
        if owned:
            store.close()


def _record_one(scenario: Scenario, processes: _Processes, store: ColocationStore, device_id: str,
                tolerance: float, max_attempts: int, quiet: Callable[[], float], time_slice_ms: float,
                counters: PerfCounters | None) -> dict:
    """Run a scenario (retrying disturbed attempts) and store it; the stored row, or {"error": ...}."""
    try:
        target, corunners = processes.ready(scenario)
        for attempt in range(1, max_attempts + 1):
            background = quiet()
            phases = {phase: _run_phase(scenario, phase, target.child, corunners, counters) for phase in PHASES}
            row = _scenario_row(scenario, phases, target.facts, device_id, tolerance, attempt, background)
            row["time_slice_ms"] = time_slice_ms
            if not row["disturbed"]:
                break
    except HwlatError as exc:  # a process failed to load or died: restart them for the next scenario
        processes.drop_target(scenario)
        processes.drop_corunners()
        return {"error": str(exc)}
    inferences = {phase: (ends, latencies) for phase, (ends, latencies, _) in phases.items() if phase != "corunners"}
    store.add_scenario(row, inferences, {phase: series for phase, (_, _, series) in phases.items()})
    return row


def _run_phase(scenario: Scenario, phase: str, target: ChildProcess, corunners: list[ChildProcess],
               counters: PerfCounters | None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One phase: start the processes it needs at a common t0, sample metrics, stop them; (ends, latencies, rows)."""
    with_target, with_corunners = phase != "corunners", phase in ("corunners", "colocated")
    t0 = time.perf_counter() + LEAD_S
    if with_corunners:
        for child, corunner in zip(corunners, scenario.corunners):
            child.send({"cmd": "go", "t0": t0, "start_s": corunner.start_s, "duty": corunner.intensity})
    if with_target:
        target.send({"cmd": "run", "t0": t0, "seconds": scenario.phase_s})
    rows = sample_series(t0, scenario.phase_s, scenario.interval_s, counters)
    if with_corunners:
        for child in corunners:
            child.send({"cmd": "pause"})
        for child in corunners:
            child.receive(60.0, f"{phase} pause")
    ends = latencies = np.empty(0)
    if with_target:
        answer = target.receive(scenario.phase_s + 600.0, phase)
        ends, latencies = np.asarray(answer["ends_s"], dtype=float), np.asarray(answer["latencies_ms"], dtype=float)
    previous = 0.0
    for row in rows:  # each step gets the inferences that ended in its window
        in_step = latencies[(ends > previous) & (ends <= row["t_s"])]
        row["target_latency_ms"] = float(in_step.mean()) if in_step.size else np.nan
        row["target_inferences"] = float(in_step.size)
        previous = row["t_s"]
    return ends, latencies, rows


def _scenario_row(scenario: Scenario, phases: dict, facts: dict, device_id: str, tolerance: float,
                  attempt: int, background_util: float) -> dict:
    """The scenarios.csv row of one attempt: latency statistics, slowdowns and the disturbed flag."""
    before, after, colocated = (phases[p][1] for p in ("isolated_before", "isolated_after", "colocated"))
    isolated = float(np.median(before))
    after_median = float(np.median(after))
    p90, p99 = (float(v) for v in np.percentile(colocated, [90, 99]))
    median = float(np.median(colocated))
    corunners = scenario.corunners
    return {
        "scenario_id": scenario.scenario_id, "workload": scenario.workload.name,
        "workload_family": scenario.workload.family, "target": scenario.target.name,
        "target_runtime": scenario.target.runtime, "target_threads": scenario.target.threads,
        "target_flops": facts.get("flops"), "target_params": facts.get("params"),
        "corunners": [c.as_dict() for c in corunners], "n_corunner_procs": len(corunners),
        "intensity": scenario.intensity, "stagger_s": scenario.stagger_s, "phase_s": scenario.phase_s,
        "interval_s": scenario.interval_s, "placement": scenario.placement, "isolated_median_ms": isolated,
        "isolated_p90_ms": float(np.percentile(before, 90)), "isolated_p99_ms": float(np.percentile(before, 99)),
        "isolated_after_median_ms": after_median, "colocated_median_ms": median, "colocated_p90_ms": p90,
        "colocated_p99_ms": p99, "colocated_n": int(colocated.size), "slowdown": median / isolated,
        "slowdown_p90": p90 / isolated, "slowdown_p99": p99 / isolated,
        "disturbed": int(abs(after_median / isolated - 1) > tolerance), "attempts": attempt,
        "background_util": background_util,
        "runtime_version": facts.get("version", ""), "device_id": device_id,
    }
