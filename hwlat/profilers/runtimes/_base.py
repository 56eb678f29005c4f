"""The extension point for runtimes: turn a workload into a timer, and describe the settings used."""

from __future__ import annotations

import abc
import importlib

from hwlat._errors import HwlatError

from hwlat.profilers._protocol import Timer
from hwlat.profilers._workload import Workload


class BaseRuntime(abc.ABC):
    """An inference engine with fixed settings; `prepare` loads a workload and returns its timer.

    Runtimes are created inside the worker process that measures them, so heavy imports happen there.
    """

    name: str
    #: the Python module the engine is imported from, and the pip requirement that installs it
    engine_module: str
    engine_requirement: str

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def version(self) -> str:
        """Version string of the engine, stored with every record; HwlatError if it is not installed."""
        try:
            return importlib.import_module(self.engine_module).__version__
        except ImportError as exc:
            raise HwlatError(f"runtime {self.name!r} needs {self.engine_requirement} "
                             f"(import failed: {exc})") from None

    def settings(self) -> dict:
        """Everything that defines this platform besides batch size (stored as JSON)."""
        return {"threads": self.threads}

    def platform_suffix(self) -> str:
        """Extra platform-key parts for non-default settings (empty by default)."""
        return ""

    @abc.abstractmethod
    def prepare(self, workload: Workload) -> Timer:
        """Load and warm nothing yet; return a timer running `number` inferences of the workload."""
