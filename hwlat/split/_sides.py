"""The two (or more) sides of a split: how each stage runs, e.g. ``onnxruntime/t1/opt-basic@1``.

Written like hwlat platform keys: ``onnxruntime/t<threads>[/opt-<level>][@<cpu>[,<cpu>...]]``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hwlat._errors import HwlatError
from hwlat.profilers.runtimes._onnxruntime import OPTIMIZATION_LEVELS

_PATTERN = re.compile(r"(?P<runtime>[a-z]+)/t(?P<threads>\d+)(?:/opt-(?P<opt>[a-z]+))?(?:@(?P<cpus>[\d,]+))?")


@dataclass(frozen=True)
class Side:
    """Runtime settings of a stage process: ONNX Runtime threads, graph optimisation level, pinned cores."""

    threads: int = 1
    optimization: str = "all"
    cpus: tuple[int, ...] | None = None

    @property
    def spec(self) -> str:
        opt = "" if self.optimization == "all" else f"/opt-{self.optimization}"
        cpus = f"@{','.join(map(str, self.cpus))}" if self.cpus else ""
        return f"onnxruntime/t{self.threads}{opt}{cpus}"


def parse_side(text: str) -> Side:
    """A Side from its spec; HwlatError names what is wrong (runtime, level, cores this machine lacks)."""
    match = _PATTERN.fullmatch(text.strip())
    if not match:
        raise HwlatError(f"side {text!r} is not RUNTIME/tTHREADS[/opt-LEVEL][@CPUS], e.g. onnxruntime/t1/opt-basic@1")
    if match["runtime"] != "onnxruntime":
        raise HwlatError(f"side {text!r}: split stages run ONNX segments with onnxruntime only, "
                         f"not {match['runtime']!r}")
    threads = int(match["threads"])
    if threads < 1:
        raise HwlatError(f"side {text!r}: threads must be >= 1")
    optimization = match["opt"] or "all"
    if optimization not in OPTIMIZATION_LEVELS:
        raise HwlatError(f"side {text!r}: unknown optimisation level {optimization!r} "
                         f"(expected one of {', '.join(OPTIMIZATION_LEVELS)})")
    cpus = tuple(int(c) for c in match["cpus"].split(",") if c) if match["cpus"] else None
    if cpus:
        missing = sorted(set(cpus) - os.sched_getaffinity(0))
        if missing:
            raise HwlatError(f"side {text!r}: cores {missing} are not available to this process "
                             f"(available: {sorted(os.sched_getaffinity(0))})")
    return Side(threads, optimization, cpus)
