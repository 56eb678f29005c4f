"""Latency measured on a device by the profilers during or after a search (stored, so reruns reuse it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hwlat._errors import HwlatError
from hwlat.search._metrics import Metric


class MeasuredLatency(Metric):
    """Median latency (ms) of each arch measured with `hwlat.profile` and kept in the measurement `store`.

    Architectures the store already holds for this device, platform and tag are not measured again.
    `on_item(arch, record_or_error)` reports progress. Costly: each new arch is a real measurement.
    """

    goal = "min"
    costly = True

    def __init__(self, space: str, store, device: str = "local", runtime: str = "onnxruntime", threads: int = 1,
                 batch_size: int = 1, protocol=None, name: str = "latency_ms",
                 on_item: Callable[[str, dict], None] | None = None) -> None:
        self.space, self.store, self.device, self.runtime = space, store, device, runtime
        self.threads, self.batch_size, self.protocol, self.name, self.on_item = threads, batch_size, protocol, name, on_item

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        from hwlat.profilers import profile

        if not len(archs):
            return np.empty(0)
        result = profile(archs, space=self.space, runtime=self.runtime, threads=self.threads,
                         batch_size=self.batch_size, protocol=self.protocol, store=self.store, device=self.device,
                         on_item=self.on_item)
        if result.failed:
            arch, error = result.failed[0]
            raise HwlatError(f"measuring {arch} on {self.device!r} failed: {error}")
        rows = self.store.frame(space=self.space, device_id=result.device_id, platform=result.platform, tag="")
        medians = rows.groupby("arch")["median_ms"].median()
        return medians.reindex(list(archs)).to_numpy(float)

    def describe(self) -> dict:
        return {**super().describe(), "device": self.device, "runtime": self.runtime, "threads": self.threads,
                "batch_size": self.batch_size}
