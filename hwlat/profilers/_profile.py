"""Profile many architectures on one platform: measure in a worker, commit each record as it arrives."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
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
    on_start: Callable[[int, int], None] | None = None,
    on_item: Callable[[str, dict], None] | None = None,
) -> ProfileResult:
    """Measure `archs` of `space` on `device` with one runtime configuration and store every record.

    Already stored (space, arch, device, platform, tag) keys are skipped, so rerunning after a crash or
    Ctrl-C resumes. `on_start(total, skipped)` and `on_item(arch, record_or_error)` report progress.
    """
    if batch_size < 1:
        raise HwlatError(f"batch size must be >= 1, got {batch_size}")
    search_space = get_space(space)
    wanted = list(dict.fromkeys(search_space.canonical(a) for a in archs))
    if not wanted:
        raise HwlatError("no architectures to profile")
    engine = get_runtime(runtime, threads, **(runtime_settings or {}))
    protocol = protocol or MeasurementProtocol()
    target = DeviceRegistry().get(device) if isinstance(device, str) else device
    if target.kind != "local":
        raise HwlatError(f"device {target.name!r} is {target.kind!r}: only local devices can be profiled here")
    owned = not isinstance(store, MeasurementStore)
    store = MeasurementStore(store) if owned else store
    try:
        return _measure_missing(wanted, space, engine, runtime_settings or {}, threads, batch_size, protocol,
                                store, target, tag, cpus, item_timeout_s, on_start, on_item)
    finally:
        if owned:
            store.close()


def _measure_missing(wanted, space, engine, runtime_settings, threads, batch_size, protocol, store, target,
                     tag, cpus, item_timeout_s, on_start, on_item) -> ProfileResult:
    """Skip what the store already holds, measure the rest in one worker, commit record by record."""
    store.add_device(target)
    platform = platform_key(engine.name, threads, batch_size, engine.platform_suffix())
    result = ProfileResult(platform=platform, device_id=target.id, db=store.url)
    done = store.completed(space=space, device_id=target.id, platform=platform, tag=tag)
    todo = [a for a in wanted if a not in done]
    result.skipped = len(wanted) - len(todo)
    if on_start:
        on_start(len(wanted), result.skipped)
    if not todo:
        return result

    settings = json.dumps({"runtime": engine.settings(), "protocol": protocol.as_dict(),
                           "cpus": list(cpus) if cpus else None}, sort_keys=True)
    config = WorkerConfig(engine.name, threads, dict(runtime_settings), protocol.as_dict(), cpus)
    with RuntimeWorker(config, timeout_s=item_timeout_s) as worker:
        version = worker.start()
        for arch in todo:
            answer = worker.measure({"space": space, "arch": arch, "batch_size": batch_size})
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
