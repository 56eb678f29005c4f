"""hwlat: hardware-aware latency measurement, prediction and search."""

from hwlat._version import __version__
