"""What gets measured: one architecture of a space at a batch size, as a torch module or an ONNX file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from hwlat.spaces import get_space


@dataclass(frozen=True)
class Workload:
    """An architecture of a space, run at `batch_size`; the input is fixed random data."""

    space: str
    arch: str
    batch_size: int = 1

    @cached_property
    def _space(self):
        return get_space(self.space)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self._space.input_shape(self.batch_size))

    def example_input(self) -> np.ndarray:
        """Seeded standard-normal input: real data values do not change dense-network latency."""
        return np.random.default_rng(0).standard_normal(self.input_shape, dtype=np.float32)

    def torch_module(self):
        return self._space.build(self.arch)

    def onnx_file(self) -> Path:
        """The exported ONNX model (dynamic batch), cached across runs and runtimes."""
        from hwlat.spaces._export import onnx_path

        return onnx_path(self._space, self.arch)

    def flops(self) -> int:
        return self._space.flops(self.arch)

    def params(self) -> int:
        return self._space.params(self.arch)
