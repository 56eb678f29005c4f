"""Profile many architectures on one platform: measure in a worker, commit each record as it arrives."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field

from hwlat._errors import HwlatError
from hwlat.devices import Device, DeviceRegistry
from hwlat.profilers._protocol import MeasurementProtocol
from hwlat.profilers._worker import RuntimeWorker, WorkerConfig
from hwlat.profilers.runtimes import get_runtime
from hwlat.spaces import get_space
from hwlat.store import MeasurementStore


@dataclass
class ProfileResult:
    """What one `profile` call did; everything it measured is already in the store."""

    platform: str
    device_id: str
    db: str
    measured: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"platform": self.platform, "device_id": self.device_id, "db": self.db, "measured": self.measured,
                "skipped": self.skipped, "failed": [{"arch": a, "error": e} for a, e in self.failed]}


def platform_key(runtime: str, threads: int, batch_size: int, suffix: str = "") -> str:
    """Short stable name of a measurement platform, e.g. ``onnxruntime/t1/b1``."""
    return f"{runtime}/t{threads}/b{batch_size}{suffix}"


def profile(
    archs: Iterable[str],
    *,
    space: str = "nb201",
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch_size: int = 1,
    runtime_settings: dict | None = None,
    protocol: MeasurementProtocol | None = None,
    store: MeasurementStore | str | None = None,
    device: Device | str = "local",
    tag: str = "",
    cpus: tuple[int, ...] | None = None,
    item_timeout_s: float = 600.0,
    connect_timeout_s: float = 60.0,
    on_start: Callable[[int, int], None] | None = None,
    on_item: Callable[[str, dict], None] | None = None,
) -> ProfileResult:
    """Measure `archs` of `space` on `device` with one runtime configuration and store every record.

    Already stored (space, arch, device, platform, tag) keys are skipped, so rerunning after a crash or
    Ctrl-C resumes. `on_start(total, skipped)` and `on_item(arch, record_or_error)` report progress.
    An "rpc" device is measured with the tvm runtime on every free server of its key (see `_remote`);
    `connect_timeout_s` bounds each wait for one of its servers.
    """
    if batch_size < 1:
        raise HwlatError(f"batch size must be >= 1, got {batch_size}")
    if not (item_timeout_s > 0 and connect_timeout_s > 0):
        raise HwlatError(f"timeouts must be positive, got item {item_timeout_s} s and connect {connect_timeout_s} s")
    search_space = get_space(space)
    wanted = list(dict.fromkeys(search_space.canonical(a) for a in archs))
    if not wanted:
        raise HwlatError("no architectures to profile")
    target = DeviceRegistry().get(device) if isinstance(device, str) else device
    runtime_settings = dict(runtime_settings or {})
    if target.kind == "rpc":
        if runtime != "tvm" or cpus:
            raise HwlatError(f"device {target.name!r} is remote: profile it with the tvm runtime and without cpus")
        runtime_settings["target"] = target.connection.get("target")
    engine = get_runtime(runtime, threads, **runtime_settings)
    protocol = protocol or MeasurementProtocol()
    servers = 0
    if target.kind == "rpc":
        from hwlat.devices._rpc import connect_device

        connected = connect_device(target, connect_timeout_s)
        target, servers = connected.device, max(1, connected.status.free)
    owned = not isinstance(store, MeasurementStore)
    store = MeasurementStore(store) if owned else store
    try:
        return _measure_missing(wanted, space, engine, runtime_settings, threads, batch_size, protocol,
                                store, target, tag, cpus, item_timeout_s, on_start, on_item,
                                servers=servers, connect_timeout_s=connect_timeout_s)
    finally:
        if owned:
            store.close()


def _measure_missing(wanted, space, engine, runtime_settings, threads, batch_size, protocol, store, target,
                     tag, cpus, item_timeout_s, on_start, on_item, servers=0, connect_timeout_s=60.0) -> ProfileResult:
    """Skip what the store already holds, measure the rest (local worker or remote servers), commit each record.

    The worker starts before anything is written, so an engine that cannot load leaves the store as it was.
    """
    platform = platform_key(engine.name, threads, batch_size, engine.platform_suffix())
    result = ProfileResult(platform=platform, device_id=target.id, db=store.url)
    done = store.completed(space=space, device_id=target.id, platform=platform, tag=tag)
    todo = [a for a in wanted if a not in done]
    result.skipped = len(wanted) - len(todo)
    if not todo:
        if on_start:
            on_start(len(wanted), result.skipped)
        return result

    settings = json.dumps({"runtime": engine.settings(), "protocol": protocol.as_dict(),
                           "cpus": list(cpus) if cpus else None}, sort_keys=True)
    with ExitStack() as stack:
        if target.kind == "rpc":
            from hwlat.profilers._remote import measure_remote

            version = engine.version()
            answers = stack.enter_context(closing(measure_remote(
                todo, space=space, batch_size=batch_size, engine=engine, device=target, protocol=protocol,
                workers=servers, item_timeout_s=item_timeout_s, connect_timeout_s=connect_timeout_s)))
        else:
            config = WorkerConfig(engine.name, threads, dict(runtime_settings), protocol.as_dict(), cpus)
            worker = stack.enter_context(RuntimeWorker(config, timeout_s=item_timeout_s))
            version = worker.start()
            answers = _local_answers(worker, todo, space, batch_size)
        store.add_device(target)
        if on_start:
            on_start(len(wanted), result.skipped)
        for arch, answer in answers:
            if "error" in answer:
                result.failed.append((arch, answer["error"]))
            else:
                record = {"space": space, "arch": arch, "device_id": target.id, "platform": platform, "tag": tag,
                          "runtime": engine.name, "runtime_version": version, "batch_size": batch_size,
                          "threads": threads, "settings": settings, "flops": answer["flops"],
                          "params": answer["params"], **answer["stats"]}
                store.add(record)
                result.measured += 1
            if on_item:
                on_item(arch, answer)
    return result


def _local_answers(worker: RuntimeWorker, todo: list[str], space: str, batch_size: int) -> Iterator[tuple[str, dict]]:
    """(arch, answer) for each arch, measured one after the other in the local worker process."""
    for arch in todo:
        yield arch, worker.measure({"space": space, "arch": arch, "batch_size": batch_size})
