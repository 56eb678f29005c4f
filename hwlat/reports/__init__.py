"""Pareto-front reports: an HTML page with an interactive plot that works offline, plus CSV and JSON."""

from hwlat.reports._pareto import Objective, pareto_front
from hwlat.reports._report import ParetoReport

__all__ = ["Objective", "ParetoReport", "pareto_front"]
