"""One table of latencies: every architecture of a dataset by every device, NaN where nothing was measured."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError

#: platform written for the public HELP datasets when they enter hwlat's measurement table
HELP_PLATFORM = "help"


@dataclass(frozen=True)
class LatencyDataset:
    """Latencies in ms of `archs` (canonical strings, dataset order) on each device, plus reference-arch rows.

    `references` are the row indices of the architectures whose latencies form a device's hardware
    embedding (HELP's `hardware_embedding_index.pt`); empty when the dataset has none.
    """

    space: str
    archs: tuple[str, ...]
    latency: Mapping[str, np.ndarray]
    references: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for device, values in self.latency.items():
            if np.shape(values) != (len(self.archs),):
                raise HwlatError(f"device {device!r}: {np.size(values)} latencies for {len(self.archs)} archs")
        if any(not 0 <= i < len(self.archs) for i in self.references):
            raise HwlatError(f"reference indices out of range 0..{len(self.archs) - 1}")

    @property
    def devices(self) -> tuple[str, ...]:
        """Device names, sorted."""
        return tuple(sorted(self.latency))

    def __getitem__(self, device: str) -> np.ndarray:
        if device not in self.latency:
            raise HwlatError(f"device {device!r} not in the {self.space} dataset (devices: {', '.join(self.devices)})")
        return self.latency[device]

    def subset(self, devices: Sequence[str]) -> LatencyDataset:
        """The same archs with only `devices` (so a predictor cannot see the others)."""
        return LatencyDataset(self.space, self.archs, {d: self[d] for d in devices}, self.references)

    def merge(self, other: LatencyDataset) -> LatencyDataset:
        """Both datasets' devices over the union of their archs (this one's first, so its references stay valid)."""
        if other.space != self.space:
            raise HwlatError(f"cannot merge a {other.space} dataset into a {self.space} one")
        shared = set(self.latency) & set(other.latency)
        if shared:
            raise HwlatError(f"both datasets have device(s) {', '.join(sorted(shared))}")
        known = set(self.archs)
        archs = self.archs + tuple(a for a in other.archs if a not in known)
        row = {arch: i for i, arch in enumerate(archs)}
        latency = {}
        for source in (self, other):
            rows = [row[a] for a in source.archs]
            for device, values in source.latency.items():
                latency[device] = np.full(len(archs), np.nan)
                latency[device][rows] = values
        return LatencyDataset(self.space, archs, latency, self.references)

    def matrix(self, devices: Sequence[str]) -> np.ndarray:
        """Latencies as an (archs x devices) array, columns in the order of `devices`."""
        return np.stack([self[d] for d in devices], axis=1) if devices else np.empty((len(self.archs), 0))

    def to_frame(self, platform: str = HELP_PLATFORM) -> pd.DataFrame:
        """Long table in the measurement store's columns (space, arch, device_id, platform, tag, median_ms)."""
        parts = [pd.DataFrame({"space": self.space, "arch": self.archs, "device_id": d, "platform": platform,
                               "tag": "", "median_ms": self[d]}) for d in self.devices]
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["median_ms"])
        return frame.dropna(subset=["median_ms"]).reset_index(drop=True)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, space: str, *, device_key: Sequence[str] = ("device_id", "platform"),
                   tag: str = "") -> LatencyDataset:
        """Dataset from measurement-store rows of `space` and `tag`; a device is a `device_key` tuple joined by ':'.

        Repeated measurements of one arch on one device are reduced to their median.
        """
        missing = {"space", "arch", "tag", "median_ms", *device_key} - set(frame.columns)
        if missing:
            raise HwlatError(f"measurement table lacks column(s) {', '.join(sorted(missing))}")
        rows = frame[(frame["space"] == space) & (frame["tag"].astype(object).fillna("") == tag)]
        if rows.empty:
            raise HwlatError(f"no measurements of space {space!r} with tag {tag!r}")
        device = rows[list(device_key)].astype(str).agg(":".join, axis=1)
        table = rows.assign(device=device).pivot_table(index="arch", columns="device", values="median_ms",
                                                        aggfunc="median", sort=False)
        table = table.reindex(pd.unique(rows["arch"]))
        return cls(space, tuple(table.index), {d: table[d].to_numpy(float) for d in table.columns})
