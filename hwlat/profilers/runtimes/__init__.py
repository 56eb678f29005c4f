"""Runtimes that turn a workload into a timer: PyTorch eager, ONNX Runtime, TVM."""

from __future__ import annotations

from hwlat._errors import HwlatError
from hwlat.profilers.runtimes._base import BaseRuntime
from hwlat.profilers.runtimes._onnxruntime import OnnxRuntime
from hwlat.profilers.runtimes._torch import TorchRuntime
from hwlat.profilers.runtimes._tvm import TvmRuntime

RUNTIMES: dict[str, type[BaseRuntime]] = {r.name: r for r in (TorchRuntime, OnnxRuntime, TvmRuntime)}


def get_runtime(name: str, threads: int = 1, **settings) -> BaseRuntime:
    """A configured runtime by name; unknown names and bad settings raise HwlatError."""
    if name not in RUNTIMES:
        raise HwlatError(f"unknown runtime {name!r} (expected one of {', '.join(RUNTIMES)})")
    if threads < 1:
        raise HwlatError(f"threads must be >= 1, got {threads}")
    try:
        return RUNTIMES[name](threads=threads, **settings)
    except TypeError as exc:
        raise HwlatError(f"runtime {name!r}: bad settings {settings!r} ({exc})") from None


__all__ = ["BaseRuntime", "OnnxRuntime", "RUNTIMES", "TorchRuntime", "TvmRuntime", "get_runtime"]
