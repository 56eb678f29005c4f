"""What a co-location scenario is: a target model, a mix of co-runners, an intensity, and their names.

Targets and model co-runners are written ``SOURCE@RUNTIME-tTHREADS``, where SOURCE is ``space:arch`` or
``onnx:path/to/model.onnx`` (e.g. ``nb201:<arch>@ort-t1``); stressors are ``KIND-xPROCESSES`` with KIND one of
cpu, membw, cache (e.g. ``membw-x2``). A workload (co-runner mix) joins items with ``+``.

A scenario's placement says where its processes run: ``free`` leaves it to the scheduler (runtimes keep their
default spin-waiting thread pools); ``pinned`` fixes every process's CPU affinity (`pinned_cpus`) and makes the
runtimes' threads wait passively (`PASSIVE_ENV`, ONNX Runtime's ``spinning=False``), so a run does not depend on
where the scheduler happens to put the processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwlat._errors import HwlatError
from hwlat.profilers._stressors import STRESSOR_KINDS
from hwlat.profilers.runtimes import RUNTIMES
from hwlat.spaces import get_space

#: short runtime names used in specs (long names are accepted too)
RUNTIME_ALIASES = {"ort": "onnxruntime", "torch": "torch", "tvm": "tvm"}
_SHORT = {long: short for short, long in RUNTIME_ALIASES.items()}
_STRESSOR = re.compile(rf"({'|'.join(STRESSOR_KINDS)})-x(\d+)")
_ITEM_START = re.compile(rf"({'|'.join(STRESSOR_KINDS)})-x\d+$|[A-Za-z][\w.-]*:")
_RUNTIME = re.compile(r"([a-z]+)-t(\d+)")
MAX_PROCESSES = 16
#: placements of a scenario's processes; the first is the default
PLACEMENTS = ("free", "pinned")
#: environment of pinned processes: OpenMP (PyTorch) and TVM worker threads sleep instead of spinning while idle,
#: and TVM does not bind its threads to cores of its own choosing
PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "TVM_THREAD_POOL_SPIN_COUNT": "0", "TVM_BIND_THREADS": "0"}


class OnnxFileWorkload:
    """A user's ONNX file as a workload: float32 input of the file's shape, symbolic dimensions set to 1."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise HwlatError(f"ONNX file {str(path)!r} does not exist")

    @cached_property
    def _model(self):
        import onnx

        try:
            return onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others for files that are not models
            raise HwlatError(f"cannot read ONNX file {str(self.path)!r}: {type(exc).__name__}") from None

    def onnx_file(self) -> Path:
        return self.path

    def example_input(self) -> np.ndarray:
        graph = self._model.graph
        initializers = {init.name for init in graph.initializer}
        inputs = [value for value in graph.input if value.name not in initializers]
        if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != 1:  # 1 = FLOAT
            raise HwlatError(f"ONNX file {self.path.name!r}: expected one float32 input, "
                             f"found {len(inputs)} input(s)")
        shape = tuple(dim.dim_value or 1 for dim in inputs[0].type.tensor_type.shape.dim)
        return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    def flops(self) -> int | None:
        return None

    def params(self) -> int:
        return int(sum(np.prod(init.dims, dtype=np.int64) for init in self._model.graph.initializer))


@dataclass(frozen=True)
class ModelSpec:
    """A model run by one runtime: `source` is ``space:arch`` (canonical) or ``onnx:<absolute path>``."""

    source: str
    runtime: str = "onnxruntime"
    threads: int = 1

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``SOURCE[@RUNTIME-tN]`` (default ``@ort-t1``), validated: known space and arch, existing ONNX file."""
        source, _, platform = text.strip().rpartition("@") if "@" in text else (text.strip(), "", "ort-t1")
        match = _RUNTIME.fullmatch(platform)
        if not match or match.group(1) not in {*RUNTIME_ALIASES, *RUNTIMES}:
            raise HwlatError(f"bad runtime part {platform!r} in {text!r} (expected e.g. ort-t1, torch-t2, tvm-t1)")
        runtime, threads = RUNTIME_ALIASES.get(match.group(1), match.group(1)), int(match.group(2))
        if not 1 <= threads <= MAX_PROCESSES:
            raise HwlatError(f"threads must be between 1 and {MAX_PROCESSES} in {text!r}")
        kind, sep, rest = source.partition(":")
        if not sep or not rest:
            raise HwlatError(f"bad model {text!r} (expected space:arch@runtime-tN or onnx:FILE@ort-tN)")
        if kind == "onnx":
            if runtime != "onnxruntime":
                raise HwlatError(f"ONNX files run with onnxruntime only, not {runtime!r}: {text!r}")
            return cls(f"onnx:{OnnxFileWorkload(rest).path}", runtime, threads)
        return cls(f"{kind}:{get_space(kind).canonical(rest)}", runtime, threads)

    @property
    def name(self) -> str:
        """The model without runtime: ``space:arch`` or ``onnx:<file stem>``."""
        kind, _, rest = self.source.partition(":")
        return f"onnx:{Path(rest).stem}" if kind == "onnx" else self.source

    @property
    def label(self) -> str:
        return f"{self.name}@{_SHORT.get(self.runtime, self.runtime)}-t{self.threads}"

    def workload(self):
        """The `Workload` (or `OnnxFileWorkload`) the runtimes prepare."""
        from hwlat.profilers._workload import Workload

        kind, _, rest = self.source.partition(":")
        return OnnxFileWorkload(rest) if kind == "onnx" else Workload(kind, rest)


@dataclass(frozen=True)
class CoRunner:
    """One co-runner process: a stressor kind or a model, run for `intensity` of each period from `start_s`."""

    kind: str  # "model" or a stressor kind
    model: ModelSpec | None = None
    intensity: float = 1.0
    start_s: float = 0.0

    @property
    def threads(self) -> int:
        return self.model.threads if self.model else 1

    def as_dict(self) -> dict:
        """The scenario's `corunners` JSON entry: kind, name, runtime, threads, intensity, start_s."""
        return {"kind": self.kind, "name": self.model.name if self.model else self.kind,
                "runtime": self.model.runtime if self.model else None, "threads": self.threads,
                "intensity": self.intensity, "start_s": self.start_s}


@dataclass(frozen=True)
class WorkloadMix:
    """A named co-runner mix: items are stressors with a process count or models (one process each)."""

    items: tuple[tuple[str, ModelSpec | int], ...]  # (stressor kind, processes) or ("model", ModelSpec)

    @classmethod
    def parse(cls, text: str) -> WorkloadMix:
        """``ITEM+ITEM+...``; a ``+`` inside an architecture string (e.g. NB201's ``|+|``) is not a separator."""
        pieces: list[str] = []
        for piece in text.strip().split("+"):
            if pieces and ":" in pieces[-1] and not _ITEM_START.match(piece):
                pieces[-1] += "+" + piece
            else:
                pieces.append(piece)
        items: list[tuple[str, ModelSpec | int]] = []
        for piece in pieces:
            match = _STRESSOR.fullmatch(piece)
            if match:
                processes = int(match.group(2))
                if not 1 <= processes <= MAX_PROCESSES:
                    raise HwlatError(f"stressor {piece!r}: processes must be between 1 and {MAX_PROCESSES}")
                items.append((match.group(1), processes))
            elif ":" in piece:
                items.append(("model", ModelSpec.parse(piece)))
            else:
                raise HwlatError(f"bad co-runner {piece!r} in workload {text!r} (expected "
                                 f"{'|'.join(STRESSOR_KINDS)}-xN or space:arch@runtime-tN)")
        if not items:
            raise HwlatError(f"workload {text!r} names no co-runners")
        return cls(tuple(items))

    @property
    def name(self) -> str:
        return "+".join(spec.label if kind == "model" else f"{kind}-x{spec}" for kind, spec in self.items)

    @property
    def family(self) -> str:
        """cpu, membw, cache or model when all items are of that kind, else mixed."""
        kinds = {kind for kind, _ in self.items}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def corunners(self, intensity: float, stagger_s: float) -> tuple[CoRunner, ...]:
        """One CoRunner per process; the i-th process starts `i * stagger_s` after the phase start."""
        flat = [CoRunner(kind, spec) if kind == "model" else CoRunner(kind)
                for kind, spec in self.items for _ in range(1 if kind == "model" else spec)]
        return tuple(CoRunner(c.kind, c.model, intensity, round(i * stagger_s, 6)) for i, c in enumerate(flat))


@dataclass(frozen=True)
class Scenario:
    """One target beside one co-runner mix at one intensity, with the phase length and sampling interval."""

    target: ModelSpec
    workload: WorkloadMix
    intensity: float = 1.0
    stagger_s: float = 0.0
    phase_s: float = 2.0
    interval_s: float = 0.1
    placement: str = PLACEMENTS[0]

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise HwlatError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if not 0 < self.intensity <= 1:
            raise HwlatError(f"intensity (duty cycle) must be in (0, 1], got {self.intensity}")
        if not (math.isfinite(self.stagger_s) and 0 <= self.stagger_s < self.phase_s):
            raise HwlatError(f"stagger must be >= 0 and below the phase length {self.phase_s} s, got {self.stagger_s}")
        if not 0.01 <= self.interval_s <= self.phase_s:
            raise HwlatError(f"sampling interval must be between 0.01 s and the phase length, got {self.interval_s}")

    @property
    def corunners(self) -> tuple[CoRunner, ...]:
        return self.workload.corunners(self.intensity, self.stagger_s)

    @property
    def scenario_id(self) -> str:
        """Stable hash of everything that defines the scenario (16 hex digits)."""
        spec = {"target": self.target.label, "target_source": self.target.source, "workload": self.workload.name,
                "intensity": self.intensity, "stagger_s": self.stagger_s, "phase_s": self.phase_s,
                "interval_s": self.interval_s}
        if self.placement != PLACEMENTS[0]:  # free scenarios keep the ids they had before placements existed
            spec["placement"] = self.placement
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def cpus(self, cores: Sequence[int]) -> tuple[tuple[int, ...] | None, tuple[tuple[int, ...] | None, ...]]:
        """CPU sets of the target and of each co-runner process on `cores`; all None when placement is free."""
        if self.placement == "free":
            return None, (None,) * len(self.corunners)
        return pinned_cpus(self.target.threads, [c.threads for c in self.corunners], cores)


def pinned_cpus(target_threads: int, corunner_threads: Sequence[int],
                cores: Sequence[int]) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Pinned placement on `cores` (the recorder's usable CPUs, in order): the target gets the first
    `target_threads` cores, co-runner processes take `threads` cores each, round-robin from the second core.

    Co-runner cores do not depend on the target, so co-runner processes are reused across targets; on 2 cores a
    1-thread target has core 0 and one co-runner core 1, a second co-runner shares core 0 with the target.
    """
    cores = sorted(cores)
    if not cores:
        raise HwlatError("no CPU to pin the processes to")

    def take(start: int, count: int) -> tuple[int, ...]:
        return tuple(sorted({cores[(start + i) % len(cores)] for i in range(min(count, len(cores)))}))

    sets, start = [], 1
    for threads in corunner_threads:
        sets.append(take(start, threads))
        start += threads
    return take(0, target_threads), tuple(sets)


def scenarios_from(targets: list[str], workloads: list[str], intensities: list[float], *, stagger_s: float = 0.0,
                   phase_s: float = 2.0, interval_s: float = 0.1, placement: str = PLACEMENTS[0]) -> list[Scenario]:
    """Every target x workload x intensity, parsed and validated (duplicates removed, order kept)."""
    if not targets or not workloads:
        raise HwlatError("give at least one target and one workload")
    if not phase_s > 0 or not math.isfinite(phase_s):
        raise HwlatError(f"phase length must be a positive number of seconds, got {phase_s}")
    models = list(dict.fromkeys(ModelSpec.parse(t) for t in targets))
    mixes = list(dict.fromkeys(WorkloadMix.parse(w) for w in workloads))
    scenarios = [Scenario(m, w, float(i), stagger_s, phase_s, interval_s, placement)
                 for w in mixes for m in models for i in dict.fromkeys(intensities or [1.0])]
    return scenarios
