"""The extension point for runtimes: turn a workload into a timer, and describe the settings used."""

from __future__ import annotations

import abc

from hwlat.profilers._protocol import Timer
from hwlat.profilers._workload import Workload


class BaseRuntime(abc.ABC):
    """An inference engine with fixed settings; `prepare` loads a workload and returns its timer.

    Runtimes are created inside the worker process that measures them, so heavy imports happen there.
    """

    name: str

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    @abc.abstractmethod
    def version(self) -> str:
        """Version string of the engine, stored with every record."""

    def settings(self) -> dict:
        """Everything that defines this platform besides batch size (stored as JSON)."""
        return {"threads": self.threads}

    def platform_suffix(self) -> str:
        """Extra platform-key parts for non-default settings (empty by default)."""
        return ""

    @abc.abstractmethod
    def prepare(self, workload: Workload) -> Timer:
        """Load and warm nothing yet; return a timer running `number` inferences of the workload."""
