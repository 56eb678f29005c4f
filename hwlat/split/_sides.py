"""The two (or more) sides of a split: how each stage runs, e.g. ``onnxruntime/t1/opt-basic@1`` or ``tvm/t1@0``.

Written like hwlat platform keys: ``onnxruntime/t<threads>[/opt-<level>][@<cpu>[,<cpu>...]]`` or
``tvm/t<threads>[@<cpu>[,<cpu>...]]`` (TVM has no optimisation level; its build is untuned unless the side
carries MetaSchedule tuning records, `with_tvm_records`), or ``tvm/t<threads>@<device>`` for a remote board
registered with ``hwlat devices add`` (its segments timed there over TVM RPC, `hwlat.split._remote`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from importlib.util import find_spec

from hwlat._errors import HwlatError
from hwlat.profilers.runtimes._onnxruntime import OPTIMIZATION_LEVELS
from hwlat.profilers.runtimes._tvm import TvmRuntime, check_tuning_records

#: runtimes a stage can run its ONNX segments with
RUNTIMES = ("onnxruntime", "tvm")

_PATTERN = re.compile(r"(?P<runtime>[a-z]+)/t(?P<threads>\d+)(?:/opt-(?P<opt>[a-z]+))?(?:@(?P<at>[^/@\s]+))?")


@dataclass(frozen=True)
class Side:
    """Runtime settings of a stage process: runtime, threads, graph optimisation level (ONNX Runtime), pinned cores.

    `runtime` "tvm" compiles each segment with TVM's default pipeline, untuned unless `tuning_records` (a
    MetaSchedule work_dir, kept as an absolute path) schedules its kernels; its `optimization` stays "all".
    """

    threads: int = 1
    optimization: str = "all"
    cpus: tuple[int, ...] | None = None
    runtime: str = "onnxruntime"
    tuning_records: str | None = None
    remote: str | None = None  # a registered remote device (tvm sides): segments are timed there, not run here

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise HwlatError(f"side runtime {self.runtime!r} is not one of {', '.join(RUNTIMES)}")
        if self.runtime == "tvm" and self.optimization != "all":
            raise HwlatError(f"side runtime 'tvm' has no optimisation level, got {self.optimization!r}")
        if self.tuning_records is not None:
            if self.runtime != "tvm":
                raise HwlatError(f"tuning records are for tvm sides, not {self.runtime!r}")
            object.__setattr__(self, "tuning_records", check_tuning_records(self.tuning_records))
        if self.remote is not None and (self.runtime != "tvm" or self.cpus):
            raise HwlatError(f"a side on remote device {self.remote!r} runs tvm on no local cores, "
                             f"got {self.runtime!r} on cores {self.cpus}")

    @property
    def spec(self) -> str:
        opt = "" if self.optimization == "all" else f"/opt-{self.optimization}"
        at = f"@{self.remote}" if self.remote else f"@{','.join(map(str, self.cpus))}" if self.cpus else ""
        return f"{self.runtime}/t{self.threads}{opt}{at}"


def parse_side(text: str) -> Side:
    """A Side from its spec; HwlatError names what is wrong (runtime, level, cores this machine lacks, TVM missing)."""
    match = _PATTERN.fullmatch(text.strip())
    if not match:
        raise HwlatError(f"side {text!r} is not RUNTIME/tTHREADS[/opt-LEVEL][@CPUS or @DEVICE], "
                         f"e.g. onnxruntime/t1/opt-basic@1 or tvm/t4@rpi4")
    runtime = match["runtime"]
    if runtime not in RUNTIMES:
        raise HwlatError(f"side {text!r}: split stages run ONNX segments with {' or '.join(RUNTIMES)}, "
                         f"not {runtime!r}")
    threads = int(match["threads"])
    if threads < 1:
        raise HwlatError(f"side {text!r}: threads must be >= 1")
    if runtime == "tvm" and match["opt"]:
        raise HwlatError(f"side {text!r}: tvm stages have no /opt- level (TVM's default pipeline, untuned); "
                         f"write tvm/t{threads}[@CPUS]")
    optimization = match["opt"] or "all"
    if optimization not in OPTIMIZATION_LEVELS:
        raise HwlatError(f"side {text!r}: unknown optimisation level {optimization!r} "
                         f"(expected one of {', '.join(OPTIMIZATION_LEVELS)})")
    if runtime == "tvm" and find_spec("tvm") is None:
        raise HwlatError(f"side {text!r}: tvm stages need {TvmRuntime.engine_requirement} (tvm is not installed)")
    at = match["at"]
    if at and not re.fullmatch(r"[\d,]+", at):
        return _remote_side(text, threads, runtime, at)
    cpus = tuple(int(c) for c in at.split(",") if c) if at else None
    if cpus:
        missing = sorted(set(cpus) - os.sched_getaffinity(0))
        if missing:
            raise HwlatError(f"side {text!r}: cores {missing} are not available to this process "
                             f"(available: {sorted(os.sched_getaffinity(0))})")
    return Side(threads, optimization, cpus, runtime)


def _remote_side(text: str, threads: int, runtime: str, name: str) -> Side:
    """The side of `text` on the registered device `name`: HwlatError unless it is a remote (rpc) device and tvm."""
    from hwlat.devices import DeviceRegistry

    try:
        device = DeviceRegistry().get(name)
    except HwlatError as exc:
        raise HwlatError(f"side {text!r}: {exc}") from None
    if device.kind != "rpc":
        raise HwlatError(f"side {text!r}: device {name!r} is not remote; this machine's cores are written @0,1")
    if runtime != "tvm":
        raise HwlatError(f"side {text!r}: a remote device runs tvm stages (write tvm/t{threads}@{name})")
    return Side(threads, runtime=runtime, remote=name)


def with_tvm_records(sides: list[Side], tuning_records: str) -> list[Side]:
    """`sides` with MetaSchedule `tuning_records` on every tvm side; HwlatError if none is tvm or the folder is no
    MetaSchedule work_dir."""
    if not any(side.runtime == "tvm" for side in sides):
        raise HwlatError(f"tvm tuning records given but no side is tvm (sides: {', '.join(s.spec for s in sides)})")
    return [replace(side, tuning_records=tuning_records) if side.runtime == "tvm" else side for side in sides]
