"""A co-location helper process: a target that times inferences on request, a co-runner that loads the machine, or
a pressure probe (`_pressure`).

Started by `_colocation.ChildProcess` as ``python -m hwlat.profilers._colocation_child`` in its own session, it
reads one JSON spec line (with `cpus`, it pins itself to those CPUs before loading any engine, so every thread
it starts inherits the affinity), then JSON commands on stdin, and answers JSON lines on its private copy of
stdout (fd 1 itself is redirected to stderr so library output cannot corrupt the protocol). It exits on end of input,
and dies with its parent (Linux parent-death signal, plus a check that the parent is still the one that
started it).
"""

from __future__ import annotations

import gc
import json
import os
import queue
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(0)


def _read_commands(commands: queue.Queue) -> None:
    for line in sys.stdin:
        commands.put(json.loads(line))
    commands.put(None)


def _prepare(spec: dict):
    """A zero-argument callable doing one unit of work (one inference, or one stressor step), or a pressure probe's
    `run`, and facts to report."""
    from hwlat.profilers._colocation_spec import ModelSpec
    from hwlat.profilers._stressors import STRESSORS

    if spec["kind"] == "probe":
        from hwlat.profilers._pressure import PressureProbe

        return PressureProbe().run, {}
    if spec["kind"] != "model":
        return STRESSORS[spec["kind"]](), {}
    from hwlat.profilers.runtimes import get_runtime

    model = ModelSpec(**spec["model"])
    runtime = get_runtime(model.runtime, model.threads, **spec.get("runtime_settings", {}))
    workload = model.workload()
    timer = runtime.prepare(workload)
    started = time.perf_counter()
    for _ in range(spec.get("warmup_runs", 10)):  # warm-up: first runs allocate and tune kernels
        timer(1)
        if time.perf_counter() - started > 2.0:
            break
    return (lambda: timer(1)), {"version": runtime.version(), "flops": workload.flops(), "params": workload.params()}


def _wait_until(deadline: float, commands: queue.Queue) -> bool:
    """Sleep until `deadline` (perf_counter seconds); False if a command arrived first."""
    while (remaining := deadline - time.perf_counter()) > 0:
        if not commands.empty():
            return False
        time.sleep(min(remaining, 0.005))
    return True


def start_at(t0: float) -> None:
    """Return at `t0` (perf_counter seconds): sleep, then spin the last 2 ms (sleep wakes up too late)."""
    time.sleep(max(0.0, t0 - time.perf_counter() - 0.002))
    while time.perf_counter() < t0:
        pass


def _run_target(run_once, command: dict) -> dict:
    """Back-to-back inferences from t0 for `seconds`; end times (s after t0) and latencies (ms) of each."""
    t0, end = command["t0"], command["t0"] + command["seconds"]
    ends, latencies = [], []
    gc.collect()
    gc.disable()
    try:
        start_at(t0)
        while time.perf_counter() < end:
            latencies.append(run_once() / 1e6)
            ends.append(round(time.perf_counter() - t0, 7))
    finally:
        gc.enable()
    return {"ends_s": ends, "latencies_ms": latencies}


def _run_corunner(step, command: dict, commands: queue.Queue) -> int:
    """From t0 + start_s, run steps for `duty` of every period until the next command; returns the steps run."""
    from hwlat.profilers._stressors import run_duty_cycle

    if not _wait_until(command["t0"] + command["start_s"], commands):
        return 0
    return run_duty_cycle(step, command["duty"], lambda: not commands.empty())


def main() -> int:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    spec = json.loads(sys.stdin.readline() or "{}")
    _die_with_parent(spec.get("parent", os.getppid()))
    if spec.get("cpus"):
        os.sched_setaffinity(0, spec["cpus"])
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=_read_commands, args=(commands,), daemon=True).start()
    try:
        work, facts = _prepare(spec)
    except Exception as exc:  # report any load failure as one line; the parent raises HwlatError with it
        text = str(exc).strip().splitlines()
        send({"error": f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__})
        return 1
    send({"ready": True, "cpus": sorted(os.sched_getaffinity(0)), **facts})
    while (command := commands.get()) is not None:
        if command["cmd"] == "run":
            send(_run_target(work, command))
        elif command["cmd"] == "probe":
            send(work(command))
        elif command["cmd"] == "go":
            steps = _run_corunner(work, command, commands)
            if commands.get() is None:  # the command that ended the run: a pause, or the end of input
                break
            send({"paused": steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
