"""Tables of the measurement store: one row per device, one row per (space, arch, device, platform, tag)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Columns that identify a measurement; a second record with the same values is not stored.
MEASUREMENT_KEY = ("space", "arch", "device_id", "platform", "tag")
#: Columns of the statistics computed by the measurement protocol (times in milliseconds).
STAT_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "ci_low_ms", "ci_high_ms",
               "ci_rel", "cv", "n", "n_outliers", "number", "warmup", "converged", "wall_s")
#: Every field of a measurement record, in column order (the autoincrement `id` is not part of a record).
RECORD_FIELDS = (*MEASUREMENT_KEY, "runtime", "runtime_version", "batch_size", "threads", "settings", *STAT_FIELDS,
                 "flops", "params", "created_at", "hwlat_version")
#: Record fields that may be left out: `tag` defaults to "", the others are filled in or stay NULL.
OPTIONAL_FIELDS = ("tag", "flops", "params", "created_at", "hwlat_version")


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class DeviceRow(Base):
    """A device measurements were taken on, keyed by its stable id."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    fingerprint: Mapped[str] = mapped_column(Text)  # JSON
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Measurement(Base):
    """Latency statistics of one architecture on one device and platform."""

    __tablename__ = "measurements"
    __table_args__ = (UniqueConstraint(*MEASUREMENT_KEY, name="uq_measurement_key"),
                      Index("ix_measurements_device_platform", "device_id", "platform"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space: Mapped[str] = mapped_column(String)
    arch: Mapped[str] = mapped_column(String)
    device_id: Mapped[str] = mapped_column(String)  # devices.id, not enforced so records can arrive first
    platform: Mapped[str] = mapped_column(String)
    tag: Mapped[str] = mapped_column(String, default="")

    runtime: Mapped[str] = mapped_column(String)
    runtime_version: Mapped[str] = mapped_column(String)
    batch_size: Mapped[int] = mapped_column(Integer)
    threads: Mapped[int] = mapped_column(Integer)
    settings: Mapped[str] = mapped_column(Text)  # JSON

    median_ms: Mapped[float]
    mean_ms: Mapped[float]
    std_ms: Mapped[float]
    p10_ms: Mapped[float]
    p90_ms: Mapped[float]
    min_ms: Mapped[float]
    max_ms: Mapped[float]
    ci_low_ms: Mapped[float]
    ci_high_ms: Mapped[float]
    ci_rel: Mapped[float]
    cv: Mapped[float]
    n: Mapped[int]
    n_outliers: Mapped[int]
    number: Mapped[int]
    warmup: Mapped[int]
    converged: Mapped[bool]
    wall_s: Mapped[float]

    flops: Mapped[int | None] = mapped_column(BigInteger)
    params: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hwlat_version: Mapped[str] = mapped_column(String)
