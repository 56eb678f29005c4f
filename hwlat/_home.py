"""Where hwlat keeps its per-user state (registry, database, caches)."""

from __future__ import annotations

import os
from pathlib import Path


def hwlat_home() -> Path:
    """The hwlat home folder: `$HWLAT_HOME` if set, else `~/.hwlat` (not created here)."""
    return Path(os.environ.get("HWLAT_HOME") or Path.home() / ".hwlat").expanduser()


def shared_data() -> Path:
    """The public datasets folder: `$HWLAT_SHARED/data`, default `../shared/data` (beside a clone of hwlat)."""
    return Path(os.environ.get("HWLAT_SHARED") or "../shared").expanduser() / "data"
