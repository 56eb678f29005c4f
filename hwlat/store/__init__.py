"""Measurement store: every record committed as soon as it is added, so interrupted runs resume."""

from hwlat.store._colocation import ColocationStore as ColocationStore  # the co-location tables, same database
from hwlat.store._schema import MEASUREMENT_KEY, OPTIONAL_FIELDS, RECORD_FIELDS, STAT_FIELDS
from hwlat.store._store import (EXPORT_FORMATS, MeasurementStore, default_url, hide_password,
                                resolve_url)

__all__ = ["EXPORT_FORMATS", "MEASUREMENT_KEY", "OPTIONAL_FIELDS", "RECORD_FIELDS", "STAT_FIELDS", "MeasurementStore",
           "default_url", "hide_password", "resolve_url"]
