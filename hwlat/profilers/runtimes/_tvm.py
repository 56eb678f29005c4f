"""Apache TVM (Relax VM, LLVM target) compiled from the workload's ONNX file.

TVM 0.27's default CPU pipeline applies no schedule (no tiling, vectorization or threading), so an
untuned build is recorded as such; MetaSchedule tuning records (a work_dir with the JSON database)
are applied when given, and `tune_onnx` makes them.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from hwlat._errors import HwlatError
from hwlat.profilers._protocol import Timer, perf_counter_timer
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes._base import BaseRuntime

#: the JSON database MetaSchedule writes in its work_dir (tuning records)
DATABASE_FILES = ("database_workload.json", "database_tuning_record.json")


class TvmRuntime(BaseRuntime):
    """Relax VM on the local CPU; `target` is a TVM target dict (default: this host's LLVM CPU)."""

    name = "tvm"
    engine_module = "tvm"
    engine_requirement = "apache-tvm: pip install 'hwlat[tvm]'"

    def __init__(self, threads: int = 1, tuning_records: str | None = None, target: dict | None = None) -> None:
        super().__init__(threads)
        self.tuning_records = None if tuning_records is None else check_tuning_records(tuning_records)
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
    mod = import_onnx(model, shape_dict)
    if tuning_records:
        mod, _, _ = apply_records(mod, target, tuning_records, what)
    return tvm.compile(mod, target=target)


def import_onnx(model, shape_dict: dict[str, list[int]]):
    """An ONNX ModelProto as a Relax IRModule (the frontend's warnings about renamed inputs silenced)."""
    require_tvm()
    from tvm.relax.frontend.onnx import from_onnx

    with warnings.catch_warnings():  # the frontend renames each input whose name is no identifier (most cut tensors)
        warnings.filterwarnings("ignore", message="Renaming name")
        return from_onnx(model, shape_dict=shape_dict)


def apply_records(mod, target, tuning_records: str, what: str | None = None) -> tuple:
    """(`mod` with the records' schedules applied, kernels scheduled, kernels), as `static_shape_tuning` applies them.

    With `what` (the model's name), records matching none of its kernels are an error: the build would silently
    be untuned. Without, any match (even none) is returned, e.g. for a segment whose kernels the cut created.
    """
    from tvm import relax

    mod = relax.get_pipeline("static_shape_tuning", total_trials=0, target=target, work_dir=tuning_records)(mod)
    tuned, kernels = scheduled_kernels(mod)
    if what is not None and not tuned:
        raise HwlatError(f"tvm: tuning records in {tuning_records} match none of the {kernels} kernels of "
                         f"{what} for target {target}: were they tuned for another model, batch size or target?")
    return mod, tuned, kernels


def check_tuning_records(path: str) -> str:
    """The absolute path of a MetaSchedule work_dir; HwlatError if it is no folder or lacks the JSON database."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise HwlatError(f"tvm: tuning records folder {path!r} does not exist")
    missing = [name for name in DATABASE_FILES if not (folder / name).is_file()]
    if missing:
        raise HwlatError(f"tvm: tuning records folder {path!r} lacks {', '.join(missing)} "
                         "(expected a MetaSchedule work_dir, e.g. from hwlat tvm-tune)")
    return str(folder.resolve())


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


def tune_onnx(model, shape_dict: dict[str, list[int]], target, work_dir: str, trials: int, trials_per_round: int = 8,
              builder_timeout_s: float = 60.0, on_trials: Callable[[int], None] | None = None) -> dict:
    """Tune the kernels of an ONNX model with MetaSchedule for `target`, adding records to `work_dir`'s database.

    Kernels are the ones `static_shape_tuning` looks up (`compile_onnx` applies them). `trials` candidates are
    measured in rounds of `trials_per_round` per kernel, kernels without records first, so a rerun resumes where the
    last stopped; existing records are kept. `on_trials` gets each round's count. A summary dict comes back.
    """
    import logging
    import time
    from contextlib import redirect_stdout

    tvm = require_tvm()
    from tvm import relax
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    if trials < 1 or trials_per_round < 1:
        raise HwlatError(f"tvm: trials and trials per round must be >= 1, got {trials} and {trials_per_round}")
    folder = check_tuning_work_dir(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    imported = import_onnx(model, shape_dict)
    with target:  # the passes static_shape_tuning runs before it tunes or applies records
        mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                        relax.transform.CanonicalizeBindings(), relax.get_pipeline("zero")])(imported)
    database = ms.database.JSONDatabase(work_dir=str(folder))
    records_before = len(database)
    tasks = sorted(ms.relax_integration.extract_tasks(mod, target),
                   key=lambda task: _best_ms(database, task) is not None)  # stable: untuned kernels first
    if not tasks:
        raise HwlatError("tvm: the model has no kernels to tune")

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
            if on_trials is not None:
                on_trials(len(measure_candidates))

    builder = _builder(int(target.attrs.get("num-cores", 1)), builder_timeout_s)
    try:
        with redirect_stdout(sys.stderr):  # MetaSchedule logs to stdout; its full logs go to work_dir/logs
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(folder))
            for handler in logging.getLogger("tvm.s_tir.meta_schedule").handlers:
                if handler.get_name().endswith(".console"):
                    handler.setLevel(logging.WARNING)
            ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(folder), max_trials_global=trials,
                               num_trials_per_iter=trials_per_round, database=database, builder=builder,
                               measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), Progress()])
    finally:
        builder.pool.shutdown()
    _, tuned, kernels = apply_records(imported, target, str(folder))
    return {"work_dir": str(folder), "target": str(target), "kernels": kernels, "scheduled_kernels": tuned,
            "tasks": len(tasks), "best_ms": {task.task_name: _best_ms(database, task) for task in tasks},
            "records_before": records_before, "records": len(database), "seconds": time.perf_counter() - start}


def _best_ms(database, task) -> float | None:
    """Mean run time (ms) of the fastest tuning record of an extracted task's kernel in `database`; None if none."""
    kernel = task.dispatched[0]
    top = database.get_top_k(database.commit_workload(kernel), 1) if database.has_workload(kernel) else []
    return float(sum(top[0].run_secs) / len(top[0].run_secs)) * 1e3 if top else None


def _builder(workers: int, timeout_s: float):
    """A MetaSchedule builder whose worker processes last the whole tuning, started at once.

    TVM's LocalBuilder starts fresh workers every round, and each imports TVM's tensor intrinsics first (10-20 s
    on 2 cores here, counted against the build timeout); here that happens once, outside the timeout.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder.local_builder import _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PersistentBuilder(ms.builder.PyBuilder):
        def __init__(self) -> None:
            super().__init__()
            self.pool = PopenPoolExecutor(max_workers=workers, timeout=timeout_s, initializer=_import_intrinsics)
            for _ in range(workers):  # the workers start (and import) now, while the search is set up
                self.pool.submit(_import_intrinsics)

        def build(self, build_inputs: list) -> list:
            results = []
            jobs = [(None, None, build_input.mod, build_input.target, None) for build_input in build_inputs]
            for result in self.pool.map_with_error_catching(lambda job: _worker_func(*job), jobs):
                if result.status == StatusKind.COMPLETE:
                    results.append(ms.builder.BuilderResult(result.value, None))
                elif result.status == StatusKind.TIMEOUT:
                    results.append(ms.builder.BuilderResult(None, f"build timed out after {timeout_s} s"))
                else:
                    results.append(ms.builder.BuilderResult(None, f"build failed: {result.value}"))
            return results

    return PersistentBuilder()


def _import_intrinsics() -> None:
    """Register TVM's tensor intrinsics (a builder worker needs them; importing them takes seconds)."""
    import tvm.s_tir.tensor_intrin  # noqa: F401


def check_tuning_work_dir(work_dir: str) -> Path:
    """`work_dir` as an absolute Path if it is new, empty or a MetaSchedule work_dir to add to (it is never cleared);
    else HwlatError."""
    folder = Path(work_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise HwlatError(f"tvm: work dir {work_dir!r} is a file, not a folder")
    missing = [name for name in DATABASE_FILES if not (folder / name).is_file()]
    if folder.is_dir() and any(folder.iterdir()) and missing:
        raise HwlatError(f"tvm: work dir {work_dir!r} holds other files and no MetaSchedule database "
                         f"({', '.join(missing)} missing): give a new or empty folder, or one tuned before")
    return folder.resolve()
