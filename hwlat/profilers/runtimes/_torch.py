"""PyTorch eager: CPU timed with perf_counter_ns, CUDA timed with events after a synchronize."""

from __future__ import annotations

from collections.abc import Callable

from hwlat._errors import HwlatError
from hwlat.profilers._protocol import Timer, perf_counter_timer
from hwlat.profilers._workload import Workload
from hwlat.profilers.runtimes._base import BaseRuntime


def cuda_event_timer(run_once: Callable[[], object], event_factory: Callable, synchronize: Callable[[], None]) -> Timer:
    """Timer from CUDA events: GPU kernels run asynchronously, so host clocks would time the launch only.

    `event_factory` and `synchronize` are `torch.cuda.Event` and `torch.cuda.synchronize` on a GPU; they are
    parameters so the logic is testable on a CPU-only machine.
    """

    def timed(number: int) -> int:
        synchronize()
        start, end = event_factory(enable_timing=True), event_factory(enable_timing=True)
        start.record()
        for _ in range(number):
            run_once()
        end.record()
        end.synchronize()
        return int(start.elapsed_time(end) * 1e6)  # elapsed_time is in ms

    return timed


class TorchRuntime(BaseRuntime):
    """PyTorch eager mode under `inference_mode`, intra-op threads set to `threads`."""

    name = "torch"
    engine_module = "torch"
    engine_requirement = "torch==2.13.0"

    def __init__(self, threads: int = 1, device: str = "cpu") -> None:
        super().__init__(threads)
        if device not in ("cpu", "cuda"):
            raise HwlatError(f"torch runtime: unknown device {device!r} (expected 'cpu' or 'cuda')")
        self.device = device

    def settings(self) -> dict:
        return {**super().settings(), "device": self.device}

    def platform_suffix(self) -> str:
        return "" if self.device == "cpu" else f"/{self.device}"

    def prepare(self, workload: Workload) -> Timer:
        import torch

        torch.set_num_threads(self.threads)
        torch.set_flush_denormal(True)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise HwlatError("torch runtime: device 'cuda' requested but torch sees no GPU")
        model = workload.torch_module().to(self.device).eval()
        inputs = torch.from_numpy(workload.example_input()).to(self.device)

        def run_once() -> None:
            with torch.inference_mode():
                model(inputs)

        if self.device == "cuda":
            return cuda_event_timer(run_once, torch.cuda.Event, torch.cuda.synchronize)
        return perf_counter_timer(run_once)
