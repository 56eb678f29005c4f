"""Apache TVM (Relax VM, LLVM target) compiled from the workload's ONNX file.

TVM 0.27's default CPU pipeline applies no schedule (no tiling, vectorization or threading), so an
untuned build is recorded as such; MetaSchedule tuning records (a work_dir with the JSON database)
are applied when given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hwlat._errors import HwlatError
from hwlat.profilers._protocol import Timer, perf_counter_timer
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes._base import BaseRuntime

_DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")


class TvmRuntime(BaseRuntime):
    """Relax VM on the local CPU; `target` is a TVM target dict (default: this host's LLVM CPU)."""

    name = "tvm"
    engine_module = "tvm"
    engine_requirement = "apache-tvm: pip install 'hwlat[tvm]'"

    def __init__(self, threads: int = 1, tuning_records: str | None = None, target: dict | None = None) -> None:
        super().__init__(threads)
        if tuning_records is not None:
            missing = [f for f in _DATABASE_FILES if not (Path(tuning_records) / f).is_file()]
            if missing:
                raise HwlatError(f"tvm: tuning records folder {tuning_records!r} lacks {', '.join(missing)} "
                                 "(expected a MetaSchedule work_dir)")
            tuning_records = str(Path(tuning_records).resolve())
        self.tuning_records = tuning_records
        self.target = target

    def _target(self):
        return tvm_target(self.target, self.threads)

    def settings(self) -> dict:
        schedule = "metaschedule" if self.tuning_records else "none (TVM default pipeline, untuned)"
        return {**super().settings(), "schedule": schedule, "tuning_records": self.tuning_records,
                "target": self.target or "host-llvm"}

    def platform_suffix(self) -> str:
        if not self.tuning_records:
            return "/untuned"
        return "/tuned-" + hashlib.sha256(self.tuning_records.encode()).hexdigest()[:8]

    def build(self, workload: Workload):
        """Compile the workload for this runtime's target (tuning records applied); a TVM Executable."""
        return compile_executable(workload, self._target(), self.tuning_records)

    def prepare(self, workload: Workload) -> Timer:
        import tvm
        from tvm import relax

        executable = self.build(workload)
        device = tvm.cpu()
        vm = relax.VirtualMachine(executable, device)
        inputs = tvm.runtime.tensor(workload.example_input(), device)
        main = vm["main"]
        return perf_counter_timer(lambda: main(inputs))


def tvm_target(spec: dict | None, threads: int = 1):
    """A `tvm.target.Target` from a target dict (default: this host's LLVM CPU); `num-cores` defaults to `threads`."""
    import tvm

    if spec is not None and not isinstance(spec, dict):
        raise HwlatError(f"tvm: a target must be a JSON object such as {{\"kind\": \"llvm\"}}, got {spec!r}")
    spec = dict(spec) if spec else {"kind": "llvm", "mcpu": _host_mcpu()}
    spec.setdefault("num-cores", threads)
    try:
        return tvm.target.Target(spec)
    except Exception as exc:  # TVM raises its own error types for malformed targets
        raise HwlatError(f"tvm: invalid target {spec!r}: {str(exc).strip().splitlines()[0]}") from None


def compile_executable(workload: Workload, target, tuning_records: str | None = None):
    """Import the workload's ONNX file into Relax and compile it for `target` (a `tvm.target.Target`).

    With `tuning_records` (a MetaSchedule work_dir, e.g. from `relax.get_pipeline("static_shape_tuning")`)
    their best schedules are applied; records matching none of the model's kernels are an error, since
    the build would silently be untuned.
    """
    import onnx

    return compile_onnx(onnx.load(str(workload.onnx_file())), {"input": list(workload.input_shape)}, target,
                        tuning_records, f"{workload.space}:{workload.arch} at batch {workload.batch_size}")


def compile_onnx(model, shape_dict: dict[str, list[int]], target, tuning_records: str | None = None,
                 what: str = "the model"):
    """Compile an ONNX ModelProto (inputs' static shapes in `shape_dict`) with Relax for `target`; an Executable.

    Without `tuning_records` this is TVM's default pipeline: untuned, no schedule on CPU. `what` names the model
    in errors.
    """
    tvm = require_tvm()
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, shape_dict=shape_dict)
    if tuning_records:
        mod = relax.get_pipeline("static_shape_tuning", total_trials=0, target=target, work_dir=tuning_records)(mod)
        tuned, kernels = scheduled_kernels(mod)
        if not tuned:
            raise HwlatError(f"tvm: tuning records in {tuning_records} match none of the {kernels} kernels of "
                             f"{what} for target {target}: were they tuned for another model, batch size or target?")
    return tvm.compile(mod, target=target)


def require_tvm():
    """The `tvm` module; HwlatError naming what to install when it cannot be imported."""
    try:
        import tvm
    except ImportError as exc:
        raise HwlatError(f"tvm: needs {TvmRuntime.engine_requirement} (import failed: {exc})") from None
    return tvm


def scheduled_kernels(mod) -> tuple[int, int]:
    """(kernels that carry a schedule, all kernels) among a module's TIR functions."""
    import tvm

    flags = [bool(func.attrs and func.attrs.get("tirx.is_scheduled", False))
             for func in mod.functions.values() if isinstance(func, tvm.tirx.PrimFunc)]
    return sum(flags), len(flags)


def _host_mcpu() -> str:
    """The LLVM CPU name TVM detects for this host (e.g. znver4)."""
    import tvm

    return str(tvm.target.Target.from_device(tvm.cpu()).attrs.get("mcpu", "generic"))
