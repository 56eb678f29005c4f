"""TVM runtime with MetaSchedule tuning records: records are applied, mismatched records are an error.

Real tuning takes minutes here, so the test writes a MetaSchedule JSON database by hand: one valid
record per kernel of the model (a trace that only annotates the root block), exactly what
`MetaScheduleApplyDatabase` looks up.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
from tvm.s_tir import meta_schedule as ms

from hwlat._errors import HwlatError
from hwlat.profilers import Workload
from hwlat.profilers.runtimes import TvmRuntime
from hwlat.profilers.runtimes._tvm import compile_executable, scheduled_kernels, tvm_target

ARCH = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def write_records(workload: Workload, target, work_dir) -> int:
    """One record per kernel of `workload` in a JSON database under `work_dir`; returns the kernel count."""
    mod = from_onnx(onnx.load(str(workload.onnx_file())), shape_dict={"input": list(workload.input_shape)})
    with target:  # the passes the static_shape_tuning pipeline runs before it tunes or applies records
        mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                        relax.transform.CanonicalizeBindings(), relax.get_pipeline("zero")])(mod)
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    tasks = ms.relax_integration.extract_tasks(mod, target)
    for task in tasks:
        schedule = tvm.s_tir.Schedule(task.dispatched[0])
        schedule.annotate(schedule.get_sblock("root", func_name="main"), "hwlat.test_record", 1)
        workload_entry = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(schedule.trace, workload_entry, [1e-3], target))
    return len(tasks)


def run(executable, workload: Workload) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(workload.example_input(), tvm.cpu())).numpy()


def test_records_are_applied_to_every_kernel_and_outputs_unchanged(tmp_path):
    workload = Workload("nb201", ARCH, batch_size=1)
    target = tvm_target(None, threads=1)
    assert write_records(workload, target, tmp_path) > 5
    runtime = TvmRuntime(threads=1, tuning_records=str(tmp_path))
    assert runtime.platform_suffix().startswith("/tuned-") and runtime.settings()["schedule"] == "metaschedule"

    mod = from_onnx(onnx.load(str(workload.onnx_file())), shape_dict={"input": [1, 3, 32, 32]})
    tuned_mod = relax.get_pipeline("static_shape_tuning", total_trials=0, target=target, work_dir=str(tmp_path))(mod)
    tuned, kernels = scheduled_kernels(tuned_mod)
    assert tuned == kernels > 5
    np.testing.assert_allclose(run(runtime.build(workload), workload),
                               run(compile_executable(workload, target), workload), rtol=1e-5, atol=1e-6)
    assert runtime.prepare(workload)(3) > 0


def test_records_of_another_batch_size_are_an_error(tmp_path):
    target = tvm_target(None, threads=1)
    write_records(Workload("nb201", ARCH, batch_size=1), target, tmp_path)
    with pytest.raises(HwlatError, match="match none of the .* kernels .* batch 2"):
        TvmRuntime(threads=1, tuning_records=str(tmp_path)).build(Workload("nb201", ARCH, batch_size=2))


def test_records_folder_without_database_is_an_error(tmp_path):
    with pytest.raises(HwlatError, match="lacks database_workload.json"):
        TvmRuntime(tuning_records=str(tmp_path))
