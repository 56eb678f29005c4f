"""A worker process per runtime configuration: runtimes disturb each other inside one process.

TVM's thread pool keeps spinning after parallel kernels and PyTorch's and ONNX Runtime's pools compete
for the same cores, so each runtime is timed alone in a fresh process with its thread settings applied
before any engine is imported.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from dataclasses import dataclass

from hwlat._errors import HwlatError

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS")


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to rebuild the runtime and protocol on its side of the pipe."""

    runtime: str
    threads: int
    runtime_settings: dict
    protocol: dict
    cpus: tuple[int, ...] | None = None


def _serve(conn, config: WorkerConfig) -> None:
    """Worker main loop: receive workloads, answer with statistics or an error message."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(config.threads)
    if config.cpus:
        os.sched_setaffinity(0, config.cpus)
    from hwlat.profilers._protocol import MeasurementProtocol
    from hwlat.profilers.runtimes import get_runtime

    try:
        runtime = get_runtime(config.runtime, config.threads, **config.runtime_settings)
        protocol = MeasurementProtocol(**config.protocol)
        conn.send({"version": runtime.version()})
    except HwlatError as exc:  # e.g. the engine is not installed: nothing can be measured
        conn.send({"error": str(exc)})
        return
    try:
        while (job := conn.recv()) is not None:
            conn.send(_answer(runtime, protocol, job))
    except (BrokenPipeError, EOFError):  # the parent gave up on this worker (item timeout) or exited
        return


def _answer(runtime, protocol, job: dict) -> dict:
    """Statistics of one workload, or an error message: a runtime failing on one model must not stop the run."""
    from hwlat.profilers._protocol import measure
    from hwlat.profilers._workload import Workload

    timer = None
    try:
        workload = Workload(**job)
        timer = runtime.prepare(workload)
        stats = measure(timer, protocol)
        return {"stats": stats.as_dict(), "flops": workload.flops(), "params": workload.params()}
    except HwlatError as exc:
        return {"error": str(exc)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    finally:
        timer = None
        gc.collect()


class RuntimeWorker:
    """Parent-side handle of one worker process; restarts it if it dies."""

    def __init__(self, config: WorkerConfig, timeout_s: float = 600.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.runtime_version = ""
        self._process = None
        self._conn = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent_conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, self.config), daemon=True)
        self._process.start()
        child_conn.close()
        self._conn = parent_conn
        hello = self._receive(timeout_s=300.0, what="start-up")
        if "error" in hello:
            self.close()
            raise HwlatError(hello["error"])
        self.runtime_version = hello["version"]

    def _receive(self, timeout_s: float, what: str) -> dict:
        if not self._conn.poll(timeout_s):
            self.close()
            raise HwlatError(f"{self.config.runtime} worker gave no answer within {timeout_s:.0f} s ({what})")
        try:
            return self._conn.recv()
        except EOFError:
            code = self._process.exitcode if self._process else None
            self.close()
            raise HwlatError(f"{self.config.runtime} worker died during {what} (exit code {code})") from None

    def start(self) -> str:
        """Start the process (import the engine, read its version); returns the runtime version."""
        if self._process is None:
            self._start()
        return self.runtime_version

    def measure(self, job: dict) -> dict:
        """Measure one workload; a crashed or hung worker is replaced and the error returned."""
        self.start()
        self._conn.send(job)
        try:
            return self._receive(self.timeout_s, what=f"{job['space']}:{job['arch']}")
        except HwlatError as exc:
            return {"error": str(exc)}

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._conn.close()
        if self._process is not None:
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._process = self._conn = None

    def __enter__(self) -> RuntimeWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
