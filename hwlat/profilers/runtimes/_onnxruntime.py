"""ONNX Runtime with the CPU execution provider (or another provider named in the settings)."""

from __future__ import annotations

from hwlat._errors import HwlatError
from hwlat.profilers._protocol import Timer, perf_counter_timer
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes._base import BaseRuntime

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class OnnxRuntime(BaseRuntime):
    """ONNX Runtime session: `threads` intra-op threads, one inter-op thread, sequential execution.

    `spinning=False` makes idle intra-op threads sleep instead of spin-waiting (ONNX Runtime spins by default),
    which matters when the session shares its cores with other processes.
    """

    name = "onnxruntime"
    engine_module = "onnxruntime"
    engine_requirement = "onnxruntime"

    def __init__(self, threads: int = 1, optimization: str = "all",
                 provider: str = "CPUExecutionProvider", spinning: bool = True) -> None:
        super().__init__(threads)
        if optimization not in OPTIMIZATION_LEVELS:
            raise HwlatError(f"onnxruntime: unknown graph optimisation level {optimization!r} "
                             f"(expected one of {', '.join(OPTIMIZATION_LEVELS)})")
        self.optimization = optimization
        self.provider = provider
        self.spinning = bool(spinning)

    def settings(self) -> dict:
        return {**super().settings(), "optimization": self.optimization, "provider": self.provider,
                **({} if self.spinning else {"spinning": False})}

    def platform_suffix(self) -> str:
        parts = "" if self.optimization == "all" else f"/opt-{self.optimization}"
        if self.provider != "CPUExecutionProvider":
            parts += f"/{self.provider.removesuffix('ExecutionProvider').lower()}"
        return parts + ("" if self.spinning else "/nospin")

    def prepare(self, workload: Workload) -> Timer:
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            raise HwlatError(f"onnxruntime: provider {self.provider!r} is not available here "
                             f"(available: {', '.join(ort.get_available_providers())})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization]
        session = ort.InferenceSession(str(workload.onnx_file()), options, providers=[self.provider])
        feed = {session.get_inputs()[0].name: workload.example_input()}
        outputs = [session.get_outputs()[0].name]
        return perf_counter_timer(lambda: session.run(outputs, feed))
