"""Co-location scenarios in the measurement store: a scenario, its per-phase inferences and its metric series.

A scenario and everything recorded for it are written in one transaction, so an interrupted recording never
leaves a half-stored scenario, and a rerun skips exactly the scenarios that are complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, inspect,
                        select, text)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from hwlat._errors import HwlatError
from hwlat._version import __version__
from hwlat.store._schema import Base
from hwlat.store._store import MeasurementStore, _reason

if TYPE_CHECKING:
    import pandas as pd

#: phases of a scenario, in recording order
PHASES = ("isolated_before", "corunners", "colocated", "isolated_after")


class ColocationScenario(Base):
    """One target measured alone, beside co-runners, and alone again; the columns of `scenarios.csv`."""

    __tablename__ = "colocation_scenarios"
    __table_args__ = (UniqueConstraint("scenario_id", "device_id", name="uq_colocation_scenario"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario_id: Mapped[str] = mapped_column(String)
    workload: Mapped[str] = mapped_column(Text)
    workload_family: Mapped[str] = mapped_column(String)
    target: Mapped[str] = mapped_column(Text)
    target_runtime: Mapped[str] = mapped_column(String)
    target_threads: Mapped[int]
    target_flops: Mapped[int | None] = mapped_column(BigInteger)
    target_params: Mapped[int | None] = mapped_column(BigInteger)
    corunners: Mapped[str] = mapped_column(Text)  # JSON list of {kind, name, runtime, threads, intensity, start_s}
    n_corunner_procs: Mapped[int]
    intensity: Mapped[float]
    stagger_s: Mapped[float]
    phase_s: Mapped[float]
    interval_s: Mapped[float]
    placement: Mapped[str] = mapped_column(String, server_default="free")  # free | pinned (see _colocation_spec)
    #: the scheduler's time slice measured when recording (ms, `hwlat.profilers.measure_time_slice_ms`); NULL in
    #: stores written before it was measured
    time_slice_ms: Mapped[float | None]
    isolated_median_ms: Mapped[float]
    isolated_p90_ms: Mapped[float]
    isolated_p99_ms: Mapped[float]
    isolated_after_median_ms: Mapped[float]
    colocated_median_ms: Mapped[float]
    colocated_p90_ms: Mapped[float]
    colocated_p99_ms: Mapped[float]
    colocated_n: Mapped[int]
    slowdown: Mapped[float]
    slowdown_p90: Mapped[float]
    slowdown_p99: Mapped[float]
    disturbed: Mapped[int]
    attempts: Mapped[int]
    background_util: Mapped[float]  # CPU utilisation (0-1) by other work just before the stored attempt
    runtime_version: Mapped[str] = mapped_column(String)
    device_id: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hwlat_version: Mapped[str] = mapped_column(String)


class ColocationSeries(Base):
    """System metrics of one sampling step of one phase (JSON object of metric name -> value)."""

    __tablename__ = "colocation_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario: Mapped[int] = mapped_column(ForeignKey("colocation_scenarios.id", ondelete="CASCADE"), index=True)
    phase: Mapped[str] = mapped_column(String)
    step: Mapped[int]
    t_s: Mapped[float]
    values: Mapped[str] = mapped_column(Text)


class ColocationInferences(Base):
    """Every target inference of one phase: end time after the phase start (s) and latency (ms), float32 arrays."""

    __tablename__ = "colocation_inferences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario: Mapped[int] = mapped_column(ForeignKey("colocation_scenarios.id", ondelete="CASCADE"), index=True)
    phase: Mapped[str] = mapped_column(String)
    n: Mapped[int]
    ends_s: Mapped[bytes] = mapped_column(LargeBinary)
    latencies_ms: Mapped[bytes] = mapped_column(LargeBinary)


#: scenario columns in export order (the database's `id` is internal)
SCENARIO_COLUMNS = tuple(c.name for c in ColocationScenario.__table__.columns if c.name != "id")
_TABLES = [ColocationScenario.__table__, ColocationSeries.__table__, ColocationInferences.__table__]


class ColocationStore(MeasurementStore):
    """The measurement store plus the co-location tables (same database, same URL rules)."""

    def __init__(self, url=None, *, create: bool = True) -> None:
        super().__init__(url, create=create)
        try:
            Base.metadata.create_all(self._engine, tables=_TABLES)
            _add_later_columns(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise HwlatError(f"cannot open database {self.url}: {_reason(exc)}") from None

    def add_scenario(self, scenario: Mapping[str, Any], inferences: Mapping[str, tuple[Sequence, Sequence]],
                     series: Mapping[str, Sequence[Mapping[str, float]]]) -> bool:
        """Store a scenario row, its inferences per phase and its metric rows per phase in one transaction.

        `inferences[phase] = (ends_s, latencies_ms)`; `series[phase]` = rows with `step`, `t_s` and metrics.
        Returns False (nothing written) if the scenario is already stored for this device.
        """
        row = _scenario_row(scenario)
        try:
            with Session(self._engine) as session, session.begin():
                stored = ColocationScenario(**row)
                session.add(stored)
                session.flush()
                for phase, (ends, latencies) in inferences.items():
                    session.add(ColocationInferences(
                        scenario=stored.id, phase=phase, n=len(latencies),
                        ends_s=np.asarray(ends, dtype="<f4").tobytes(),
                        latencies_ms=np.asarray(latencies, dtype="<f4").tobytes()))
                for phase, rows in series.items():
                    session.add_all(ColocationSeries(
                        scenario=stored.id, phase=phase, step=int(r["step"]), t_s=float(r["t_s"]),
                        values=json.dumps({k: _jsonable(v) for k, v in r.items() if k not in ("step", "t_s")}))
                        for r in rows)
            return True
        except IntegrityError:
            if row["scenario_id"] in self.completed_scenarios(row["device_id"]):
                return False
            raise HwlatError(f"cannot store scenario {row['scenario_id']} in {self.url}: integrity error") from None
        except SQLAlchemyError as exc:
            raise HwlatError(f"cannot store scenario {row['scenario_id']} in {self.url}: {_reason(exc)}") from None

    def completed_scenarios(self, device_id: str) -> set[str]:
        """Ids of the scenarios stored for `device_id`."""
        query = select(ColocationScenario.scenario_id).filter_by(device_id=device_id)
        with Session(self._engine) as session:
            return set(session.scalars(query))

    def scenarios_frame(self, **filters: Any) -> pd.DataFrame:
        """Stored scenarios (insertion order) whose columns equal `filters`."""
        import pandas as pd

        unknown = sorted(set(filters) - set(SCENARIO_COLUMNS))
        if unknown:
            raise HwlatError(f"unknown scenario column(s) {', '.join(unknown)}; columns: {', '.join(SCENARIO_COLUMNS)}")
        table = ColocationScenario.__table__
        query = select(*(table.c[name] for name in SCENARIO_COLUMNS)).filter_by(**filters).order_by(table.c.id)
        with self._engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).all(), columns=list(SCENARIO_COLUMNS))
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        for name in ("target_flops", "target_params"):
            frame[name] = frame[name].astype("Int64")
        return frame

    def series_frame(self, device_id: str | None = None) -> pd.DataFrame:
        """Metric rows: scenario_id, phase, step, t_s, then one column per metric (NaN where not recorded)."""
        import pandas as pd

        series, scenario = ColocationSeries, ColocationScenario
        query = (select(scenario.scenario_id, series.phase, series.step, series.t_s, series.values)
                 .join(scenario, series.scenario == scenario.id).order_by(series.id))
        if device_id is not None:
            query = query.where(scenario.device_id == device_id)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        keys = pd.DataFrame([r[:4] for r in rows], columns=["scenario_id", "phase", "step", "t_s"])
        values = pd.DataFrame.from_records([json.loads(r[4]) for r in rows], index=keys.index)
        return pd.concat([keys, values.astype(float)], axis=1)

    def inferences_frame(self, device_id: str | None = None) -> pd.DataFrame:
        """Every stored target inference: scenario_id, phase, end_s (after the phase start), latency_ms."""
        import pandas as pd

        inferences, scenario = ColocationInferences, ColocationScenario
        query = (select(scenario.scenario_id, inferences.phase, inferences.ends_s, inferences.latencies_ms)
                 .join(scenario, inferences.scenario == scenario.id).order_by(inferences.id))
        if device_id is not None:
            query = query.where(scenario.device_id == device_id)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        parts = [pd.DataFrame({"scenario_id": sid, "phase": phase, "end_s": np.frombuffer(ends, dtype="<f4"),
                               "latency_ms": np.frombuffer(latencies, dtype="<f4")})
                 for sid, phase, ends, latencies in rows]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {"scenario_id": [], "phase": [], "end_s": np.array([], "f4"), "latency_ms": np.array([], "f4")})


#: columns added after the first stores were written, with their definition for older stores: their scenarios
#: were all `free`, and their time slice was not measured
_LATER_COLUMNS = {"placement": "VARCHAR NOT NULL DEFAULT 'free'", "time_slice_ms": "FLOAT"}


def _add_later_columns(engine) -> None:
    """Stores written before a column in `_LATER_COLUMNS` existed get it."""
    table = ColocationScenario.__tablename__
    present = {c["name"] for c in inspect(engine).get_columns(table)}
    with engine.begin() as connection:
        for name, definition in _LATER_COLUMNS.items():
            if name not in present:
                connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {definition}"))


def _jsonable(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def _scenario_row(scenario: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario as column values; required columns present, no unknown ones."""
    optional = {"target_flops", "target_params", "created_at", "hwlat_version", "placement", "time_slice_ms"}
    missing = [name for name in SCENARIO_COLUMNS if name not in optional and scenario.get(name) is None]
    unknown = sorted(set(scenario) - set(SCENARIO_COLUMNS))
    if missing or unknown:
        problems = ([f"missing field(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
        raise HwlatError(f"invalid co-location scenario: {'; '.join(problems)}")
    row = {name: scenario.get(name) for name in SCENARIO_COLUMNS}
    row["created_at"] = row["created_at"] or datetime.now(timezone.utc)
    row["hwlat_version"] = row["hwlat_version"] or __version__
    row["placement"] = row["placement"] or "free"
    if not isinstance(row["corunners"], str):
        row["corunners"] = json.dumps(row["corunners"])
    return row
