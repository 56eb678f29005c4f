"""A SQLAlchemy-backed store where every measurement is committed as soon as it is added."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session

from hwlat._errors import HwlatError
from hwlat._files import write_atomically
from hwlat._version import __version__
from hwlat.store._schema import (
    MEASUREMENT_KEY,
    OPTIONAL_FIELDS,
    RECORD_FIELDS,
    Base,
    DeviceRow,
    Measurement,
)

if TYPE_CHECKING:
    import pandas as pd

    from hwlat.devices import Device

EXPORT_FORMATS = ("csv", "parquet")
SQLITE_BUSY_TIMEOUT_S = 30
_COLUMNS = {column.name: column for column in Measurement.__table__.columns}
_NUMERIC_DTYPES = {  # pandas dtypes of the numeric columns; nullable integers stay integers
    name: ("Int64" if column.nullable else "int64") if column.type.python_type is int else column.type.python_type
    for name, column in _COLUMNS.items() if column.type.python_type in (int, float, bool)
}


def default_url() -> str:
    """`$HWLAT_DB` if set, else ``hwlat.sqlite`` in the current directory."""
    return os.environ.get("HWLAT_DB") or "hwlat.sqlite"


def resolve_url(url: str | os.PathLike | None) -> str:
    """A SQLAlchemy URL: URLs pass through, plain paths become ``sqlite:///<absolute path>``."""
    url = default_url() if url is None else url
    if isinstance(url, str) and "://" in url:
        return url
    return f"sqlite:///{Path(url).expanduser().resolve()}"


class MeasurementStore:
    """Measurements and the devices they were taken on, in SQLite (default) or any SQLAlchemy database.

    ``MeasurementStore()`` opens ``$HWLAT_DB`` or ``./hwlat.sqlite``; a path opens that SQLite file and a
    URL such as ``postgresql://host/db`` any database SQLAlchemy can reach. Tables are created on open;
    with ``create=False`` a missing SQLite file is an error instead of a new empty store.
    """

    def __init__(self, url: str | os.PathLike | None = None, *, create: bool = True) -> None:
        self._engine = _open_engine(resolve_url(url), create)
        self._url = self._engine.url.render_as_string(hide_password=True)
        try:
            Base.metadata.create_all(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise HwlatError(f"cannot open database {self.url}: {_reason(exc)}") from None

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._url

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def add_device(self, device: Device) -> None:
        """Insert `device`, or update its name, kind and fingerprint if its id is already stored."""
        now = datetime.now(timezone.utc)
        fingerprint = json.dumps(device.fingerprint, sort_keys=True)
        for _ in range(2):  # a concurrent writer may insert the same id between our read and insert
            try:
                with Session(self._engine) as session, session.begin():
                    row = session.get(DeviceRow, device.id)
                    if row is None:
                        session.add(DeviceRow(id=device.id, name=device.name, kind=device.kind,
                                              fingerprint=fingerprint, first_seen=now, last_seen=now))
                    else:
                        row.name, row.kind, row.fingerprint, row.last_seen = (device.name, device.kind,
                                                                              fingerprint, now)
                return
            except IntegrityError:
                continue
            except SQLAlchemyError as exc:
                raise HwlatError(f"cannot store device {device.name!r} in {self.url}: {_reason(exc)}") from None

    def add(self, record: Mapping[str, Any]) -> bool:
        """Store one measurement and commit it; False (and nothing stored) if its key is already there."""
        row = _validated(record)
        try:
            with Session(self._engine) as session, session.begin():
                session.add(Measurement(**row))
            return True
        except IntegrityError as exc:
            if self._has_key(row):
                return False
            raise HwlatError(f"cannot store measurement of {row['arch']!r}: {_reason(exc)}") from None
        except SQLAlchemyError as exc:
            raise HwlatError(f"cannot store measurement in {self.url}: {_reason(exc)}") from None

    def completed(self, *, space: str, device_id: str, platform: str, tag: str = "") -> set[str]:
        """Architectures already stored for this space, device, platform and tag."""
        query = select(Measurement.arch).filter_by(space=space, device_id=device_id, platform=platform, tag=tag)
        with Session(self._engine) as session:
            return set(session.scalars(query))

    def frame(self, **filters: Any) -> pd.DataFrame:
        """All measurements as a DataFrame (in insertion order), keeping rows whose columns equal `filters`."""
        import pandas as pd

        unknown = sorted(set(filters) - set(_COLUMNS))
        if unknown:
            raise HwlatError(f"unknown measurement column(s) {', '.join(unknown)}; columns: {', '.join(_COLUMNS)}")
        query = select(Measurement.__table__).filter_by(**filters).order_by(Measurement.id)
        with self._engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).all(), columns=list(_COLUMNS)).astype(_NUMERIC_DTYPES)
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    def devices_frame(self) -> pd.DataFrame:
        """All devices as a DataFrame; `fingerprint` is a JSON string."""
        import pandas as pd

        columns = [column.name for column in DeviceRow.__table__.columns]
        with self._engine.connect() as connection:
            rows = connection.execute(select(DeviceRow.__table__).order_by(DeviceRow.first_seen)).all()
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("first_seen", "last_seen"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def export(self, path: str | os.PathLike, format: str | None = None, **filters: Any) -> int:
        """Write the (filtered) measurements to CSV or Parquet and their devices to ``<stem>.devices.json``.

        Both files are written to temporary files next to the target and moved into place only when
        complete, so a failure never leaves a partial file. Returns the number of rows written.
        """
        path = Path(path)
        format = (format or path.suffix.lstrip(".")).lower()
        if format not in EXPORT_FORMATS:
            raise HwlatError(f"cannot export to {str(path)!r}: unknown format {format!r} "
                             f"(use a .csv or .parquet file or one of --format {', '.join(EXPORT_FORMATS)})")
        frame = self.frame(**filters)
        devices = self.devices_frame()
        devices = devices[devices["id"].isin(frame["device_id"])]
        records = [{**row, "fingerprint": json.loads(row["fingerprint"]), "first_seen": row["first_seen"].isoformat(),
                    "last_seen": row["last_seen"].isoformat()} for row in devices.to_dict("records")]
        devices_path = path.with_name(f"{path.stem}.devices.json")

        def write_frame(target: Path) -> None:
            if format == "csv":
                frame.to_csv(target, index=False)
            else:
                frame.to_parquet(target, index=False)

        def write_devices(target: Path) -> None:
            target.write_text(json.dumps(records, indent=2, sort_keys=True))

        write_atomically({path: write_frame, devices_path: write_devices})
        return len(frame)

    def summary(self) -> pd.DataFrame:
        """Per space, device, platform and tag: the number of architectures and the median of median_ms and cv."""
        keys = ["space", "device_id", "platform", "tag"]
        frame = self.frame()
        summary = frame.groupby(keys, sort=True).agg(count=("arch", "size"), median_ms=("median_ms", "median"),
                                                     cv=("cv", "median"))
        return summary.reset_index()

    def _has_key(self, row: Mapping[str, Any]) -> bool:
        query = select(func.count()).select_from(Measurement).filter_by(**{k: row[k] for k in MEASUREMENT_KEY})
        with Session(self._engine) as session:
            return bool(session.scalar(query))


def _open_engine(url: str, create: bool) -> Engine:
    """An engine for `url`; SQLite files are checked up front and opened in WAL mode with a busy timeout."""
    shown = hide_password(url)
    try:
        parsed = make_url(url)
        is_sqlite = parsed.get_backend_name() == "sqlite"
        if is_sqlite:
            _check_sqlite_location(shown, parsed.database, create)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if is_sqlite else {})
    except NoSuchModuleError:
        raise HwlatError(f"cannot open database {shown}: unknown database type {url.split('://')[0]!r}") from None
    except ArgumentError as exc:
        raise HwlatError(f"cannot open database {shown}: {exc}") from None
    except ImportError as exc:
        raise HwlatError(f"cannot open database {shown}: database driver not installed ({exc.name})") from None
    if is_sqlite:
        event.listen(engine, "connect", _configure_sqlite)
    return engine


def hide_password(url: str) -> str:
    """`url` with any password masked, for messages and saved settings."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _check_sqlite_location(url: str, database: str | None, create: bool) -> None:
    """Name the problem with a SQLite file's location, which sqlite itself reports as "unable to open"."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.is_dir():
        raise HwlatError(f"cannot open database {url}: {path} is a directory")
    if not create and not path.exists():
        raise HwlatError(f"cannot open database {url}: {path} does not exist")
    if not path.parent.is_dir():
        raise HwlatError(f"cannot open database {url}: directory {path.parent} does not exist")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise HwlatError(f"cannot open database {url}: {path if path.exists() else path.parent} is not writable")


def _configure_sqlite(dbapi_connection, _record) -> None:
    """WAL lets one process read while another writes; the busy timeout makes writers wait, not fail."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.close()


def _validated(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as column values: every required field present, no unknown field, values of the column type."""
    missing = [name for name in RECORD_FIELDS if name not in OPTIONAL_FIELDS and record.get(name) is None]
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    if missing or unknown:
        problems = ([f"missing field(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown field(s) {', '.join(unknown)}"] if unknown else [])
        raise HwlatError(f"invalid measurement record: {'; '.join(problems)}")
    row = {name: record.get(name) for name in RECORD_FIELDS}
    row["tag"] = row["tag"] or ""
    row["created_at"] = row["created_at"] or datetime.now(timezone.utc)
    row["hwlat_version"] = row["hwlat_version"] or __version__
    if not isinstance(row["settings"], str):
        row["settings"] = json.dumps(row["settings"], sort_keys=True)
    for name, value in row.items():
        python_type = _COLUMNS[name].type.python_type
        if value is None or python_type is datetime:
            continue
        try:
            row[name] = python_type(value)
        except (TypeError, ValueError):
            raise HwlatError(f"invalid measurement record: {name}={value!r} is not a {python_type.__name__}") from None
    return row


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, on one line."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())
