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

    def version(self) -> str:
        import tvm

        return tvm.__version__

    def _target(self):
        import tvm

        spec = dict(self.target) if self.target else {"kind": "llvm", "mcpu": _host_mcpu()}
        spec.setdefault("num-cores", self.threads)
        try:
            return tvm.target.Target(spec)
        except Exception as exc:  # TVM raises its own error types for malformed targets
            raise HwlatError(f"tvm: invalid target {spec!r}: {str(exc).splitlines()[0]}") from None

    def settings(self) -> dict:
        schedule = "metaschedule" if self.tuning_records else "none (TVM default pipeline, untuned)"
        return {**super().settings(), "schedule": schedule, "tuning_records": self.tuning_records,
                "target": self.target or "host-llvm"}

    def platform_suffix(self) -> str:
        if not self.tuning_records:
            return "/untuned"
        return "/tuned-" + hashlib.sha256(self.tuning_records.encode()).hexdigest()[:8]

    def prepare(self, workload: Workload) -> Timer:
        import onnx
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        target = self._target()
        mod = from_onnx(onnx.load(str(workload.onnx_file())), shape_dict={"input": list(workload.input_shape)})
        if self.tuning_records:
            mod = relax.get_pipeline("static_shape_tuning", total_trials=0, target=target,
                                     work_dir=self.tuning_records)(mod)
        executable = tvm.compile(mod, target=target)
        device = tvm.cpu()
        vm = relax.VirtualMachine(executable, device)
        inputs = tvm.runtime.tensor(workload.example_input(), device)
        main = vm["main"]
        return perf_counter_timer(lambda: main(inputs))


def _host_mcpu() -> str:
    """The LLVM CPU name TVM detects for this host (e.g. znver4)."""
    import tvm

    return str(tvm.target.Target.from_device(tvm.cpu()).attrs.get("mcpu", "generic"))
