"""Profile on a remote device: compile on the host for its TVM target, measure on every free RPC server.

Each workload is compiled once (cached on disk as a shared library), then measured in a fresh RPC session
per item: upload, load into a Relax VM, and time with the same `measure()` protocol as local runs through
a timer built on the remote `time_evaluator` (so the clock is the board's). The server kills a session
that exceeds the item timeout; the host abandons an item whose server stops answering altogether.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from hwlat._errors import HwlatError
from hwlat._home import hwlat_home
from hwlat.devices import Device
from hwlat.devices._cross import link_compiler
from hwlat.devices._rpc import (
    NoServerError,
    RemoteSession,
    key_status,
    request_session,
    rpc_address,
)
from hwlat.profilers._dispatch import Dispatcher, ItemFailed, NoServer, ServerLost
from hwlat.profilers._protocol import MeasurementProtocol, Timer, measure
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes._tvm import TvmRuntime, tvm_target

#: seconds the host waits beyond the item timeout before giving up on a server that stopped answering
HOST_GRACE_S = 30.0
#: seconds between two looks at the tracker for servers that joined the key mid-run
JOIN_POLL_S = 2.0


def evaluator_timer(vm, device) -> Timer:
    """Timer running `number` inferences with the VM's `time_evaluator` (one extra untimed warm-up per call)."""
    evaluators = {}

    def timed(number: int) -> int:
        if number not in evaluators:
            evaluators[number] = vm.time_evaluator("invoke_stateful", device, number=number, repeat=1)
        return round(evaluators[number]("main").results[0] * number * 1e9)

    return timed


class HostBuilds:
    """Compile each workload once for the engine's target, one at a time, cached as a shared library.

    `cc` is the (cross) compiler that links the library for the board, e.g. ``aarch64-linux-gnu-g++``;
    by default TVM's host compiler, which only suits boards of the host's architecture.
    """

    def __init__(self, engine: TvmRuntime, cc: str | None = None, cache_dir: Path | None = None) -> None:
        self.engine, self.cc = engine, cc
        self.cache_dir = cache_dir or hwlat_home() / "cache" / "tvm-lib"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwlat-compile")
        self._futures: dict[Workload, Future] = {}
        self._lock = threading.Lock()

    def submit(self, workload: Workload) -> Future:
        """Future of the library path; compiling starts in the background in submission order."""
        with self._lock:
            if workload not in self._futures:
                self._futures[workload] = self._executor.submit(self._build, workload)
            return self._futures[workload]

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _build(self, workload: Workload) -> Path:
        target = tvm_target(self.engine.target, self.engine.threads)
        path = self.cache_dir / f"{self._cache_key(workload, target)}.so"
        if path.exists():
            return path
        export_library(self.engine.build(workload), path, self.cc)
        return path

    def _cache_key(self, workload: Workload, target) -> str:
        digest = hashlib.sha256(workload.onnx_file().read_bytes())
        records = self.engine.tuning_records
        stamps = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(Path(records).glob("*.json"))] \
            if records else []
        parts = (str(target), workload.input_shape, records, stamps, self.cc, self.engine.version())
        digest.update(repr(parts).encode())
        return digest.hexdigest()[:24]


def export_library(executable, path: Path, cc: str | None = None) -> None:
    """Write a compiled Relax executable to `path` as a shared library, atomically, linked by `cc` (a cross
    compiler such as ``aarch64-linux-gnu-g++``) or by TVM's host compiler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".so")
    os.close(fd)
    try:
        if cc:
            from tvm.support import cc as compilers

            executable.export_library(tmp, fcompile=compilers.cross_compiler(cc))
        else:
            executable.export_library(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def remote_timer(session, library: Path, threads: int, device_type: int, inputs: list) -> Timer:
    """Upload a compiled library into an open RPC session, load it into a Relax VM on the board's first `threads`
    big cores with `inputs` as main's arguments: a timer of its inferences on the board's clock."""
    import tvm
    from tvm import relax

    session.upload(str(library))
    module = session.load_module(library.name)
    device = session.device(device_type)
    session.get_function("runtime.config_threadpool")(1, threads)  # 1: big cores first, `threads` of them
    vm = relax.VirtualMachine(module, device)
    vm.set_input("main", *(tvm.runtime.tensor(array, device) for array in inputs))
    return evaluator_timer(vm, device)


def run_on_session(session, library: Path, workload: Workload, protocol: MeasurementProtocol, threads: int,
                   device_type: int) -> dict:
    """Upload, load and measure one compiled workload in an open RPC session; stats, flops and params."""
    stats = measure(remote_timer(session, library, threads, device_type, [workload.example_input()]), protocol)
    return {"stats": stats.as_dict(), "flops": workload.flops(), "params": workload.params()}


def measure_remote(archs: list[str], *, space: str, batch_size: int, engine: TvmRuntime, device: Device,
                   protocol: MeasurementProtocol, workers: int, item_timeout_s: float,
                   connect_timeout_s: float) -> Iterator[tuple[str, dict]]:
    """(arch, answer) for every arch, measured on `workers` servers of `device` in parallel, more as servers join.

    Checked now, before any answer is asked for: the device's address and that a compiler links for its target.
    """
    tracker, key = rpc_address(device)
    target = tvm_target(engine.target, engine.threads)
    cc = device.connection.get("cc")
    link_compiler(engine.target or {}, cc, device.name)
    return _answers(archs, space, batch_size, engine, device, protocol, workers, item_timeout_s, connect_timeout_s,
                    tracker, key, target.get_target_device_type(), cc)


def _answers(archs: list[str], space: str, batch_size: int, engine: TvmRuntime, device: Device,
             protocol: MeasurementProtocol, workers: int, item_timeout_s: float, connect_timeout_s: float,
             tracker: str, key: str, device_type: int, cc: str | None) -> Iterator[tuple[str, dict]]:
    """The answers of `measure_remote`, its arguments checked: compile in the background, dispatch to servers."""
    builds = HostBuilds(engine, cc=cc)
    workloads = {arch: Workload(space, arch, batch_size) for arch in archs}
    for workload in workloads.values():
        builds.submit(workload)

    def prepare(arch: str) -> Path:
        return builds.submit(workloads[arch]).result()

    def acquire():
        # while the key's servers are registered but busy keep waiting, as long as a busy item may take
        give_up = time.monotonic() + item_timeout_s + HOST_GRACE_S
        while True:
            try:
                return request_session(tracker, key, connect_timeout_s, session_timeout_s=item_timeout_s)
            except NoServerError as exc:
                if time.monotonic() < give_up and _registered(tracker, key):
                    continue
                raise NoServer(f"device {device.name!r} stopped answering: {exc}") from None
            except HwlatError as exc:  # the tracker itself is gone
                raise NoServer(f"device {device.name!r} stopped answering: {exc}") from None

    def run(arch: str, library: Path, session: RemoteSession) -> dict:
        try:
            return run_on_session(session.rpc, library, workloads[arch], protocol, engine.threads, device_type)
        except Exception as exc:  # any failure on the server side, sorted out below  # noqa: BLE001
            text = str(exc)
            if "SessionTimeout" in text:
                raise ItemFailed(f"timed out after {item_timeout_s:.0f} s on device {device.name!r}") from None
            lines = [line for line in text.splitlines() if line.strip()]
            raise ServerLost(f"{type(exc).__name__}: {lines[-1] if lines else ''}") from None

    dispatcher = Dispatcher(archs, prepare, acquire, run, workers=workers, deadline_s=item_timeout_s + HOST_GRACE_S,
                            release=RemoteSession.close, capacity=lambda: _registered(tracker, key),
                            poll_s=JOIN_POLL_S)
    try:
        yield from dispatcher.answers()
    finally:
        builds.close()


def _registered(tracker: str, key: str) -> int:
    """Servers registered under `key` (0 if the tracker cannot be reached within a few seconds)."""
    try:
        return key_status(tracker, key, timeout_s=5.0).total
    except HwlatError:
        return 0
