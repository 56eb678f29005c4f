"""Latency datasets: HELP's public files from any folder and the measurement store's tables, as one type."""

from hwlat.datasets._dataset import HELP_PLATFORM, LatencyDataset
from hwlat.datasets._help import HELP_FOLDERS, load_dataset, load_help
from hwlat.datasets._safe import NUMPY_SCALARS, safe_load

__all__ = ["HELP_FOLDERS", "HELP_PLATFORM", "NUMPY_SCALARS", "LatencyDataset", "load_dataset", "load_help", "safe_load"]
