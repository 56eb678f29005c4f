"""Split a network across a device and servers: cut points, measured parts, Pareto fronts, real runs."""

from hwlat.split._api import CLOSE_CALL, RACE_ALPHA, Plan, SplitResult, SplitSession, analyze_split
from hwlat.split._cuts import COMPRESSIONS, CutPoint, find_cuts, static_shapes
from hwlat.split._energy import DevicePower, device_energy_mj, measure_device_power, parse_device_power
from hwlat.split._models import resolve_model
from hwlat.split._network import (
           Link,
           Network,
           PacedWriter,
           as_network,
           parse_bandwidth,
           parse_bandwidths,
           parse_duration_ms,
           parse_network,
           parse_networks,
           parse_rtts,
           wait_until,
)
from hwlat.split._objectives import Hop, PlanCosts, TransportCalibration, objectives
from hwlat.split._sides import Side, parse_side

__all__ = ["CLOSE_CALL", "COMPRESSIONS", "CutPoint", "DevicePower", "Hop", "Link", "Network", "PacedWriter", "Plan",
           "PlanCosts", "RACE_ALPHA", "Side", "SplitResult", "SplitSession", "TransportCalibration", "analyze_split",
           "as_network", "device_energy_mj", "find_cuts", "measure_device_power", "objectives", "parse_bandwidth",
           "parse_bandwidths", "parse_device_power", "parse_duration_ms", "parse_network", "parse_networks",
           "parse_rtts", "parse_side", "resolve_model", "static_shapes", "wait_until"]
