"""Cut a shape-inferred ONNX model into segments between two cut points, and run them (ONNX Runtime or TVM)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from hwlat._errors import HwlatError
from hwlat.split._cuts import CutPoint

if TYPE_CHECKING:
    from hwlat.split._sides import Side

#: a segment as a function: input arrays (in its start cut's tensor order) -> output arrays (its end cut's order)
Runner = Callable[[list], list]


class Segmenter:
    """Extracts segments of one model; the graph is indexed once (onnx.utils.Extractor)."""

    def __init__(self, model) -> None:
        import onnx.utils

        self._extractor = onnx.utils.Extractor(model)

    def segment(self, start: CutPoint, end: CutPoint) -> bytes | None:
        """The serialized model computing `end`'s tensors from `start`'s; None when the segment is empty."""
        if end.index < start.index:
            raise HwlatError(f"segment from cut {start.index} to cut {end.index} runs backwards")
        if end.index == start.index:
            return None
        return self._extractor.extract_model(list(start.tensors), list(end.tensors)).SerializeToString()


def session(model_bytes: bytes, threads: int = 1, optimization: str = "all"):
    """An ONNX Runtime CPU session with one inter-op thread and `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def segment_runner(model_bytes: bytes | None, inputs: list[str], outputs: list[str], side: Side) -> Runner:
    """The segment `model_bytes` (None: empty, forwards its inputs) as a Runner on `side`'s runtime.

    `inputs` and `outputs` name the arrays the Runner takes and returns, in that order.
    """
    if model_bytes is None:
        return lambda arrays: list(arrays)
    if side.runtime == "tvm":
        return TvmSegment(model_bytes, inputs, outputs, side.threads, side.tuning_records)
    sess = session(model_bytes, side.threads, side.optimization)
    return lambda arrays: sess.run(outputs, dict(zip(inputs, arrays)))


class TvmSegment:
    """A segment compiled by TVM (Relax ONNX frontend, host LLVM target with `threads` cores), a Runner on the Relax VM.

    Untuned without `tuning_records`: no schedule (tiling, vectorization, threading), far slower than ONNX Runtime on
    convolutions. With them, `scheduled` of its `kernels` got a tuned schedule: a cut makes kernels the whole model
    lacks (e.g. a convolution without the ReLU it fuses with), so a segment may match records partly or not at all.
    Inputs need static shapes (the stage's model has them).
    """

    def __init__(self, model_bytes: bytes, inputs: list[str], outputs: list[str], threads: int = 1,
                 tuning_records: str | None = None) -> None:
        import onnx

        from hwlat.profilers.runtimes._tvm import (
            apply_records,
            import_onnx,
            require_tvm,
            tvm_target,
        )

        tvm = require_tvm()
        from tvm import relax

        model = onnx.ModelProto.FromString(model_bytes)
        shapes = input_shapes(model)
        self._order = [inputs.index(name) for name in shapes]  # the VM takes the graph's inputs positionally
        produced = [value.name for value in model.graph.output]
        self._single = len(produced) == 1
        self._pick = [produced.index(name) for name in outputs]
        target = tvm_target(None, threads)
        mod = import_onnx(model, shapes)
        self.scheduled, self.kernels = 0, None
        if tuning_records:
            mod, self.scheduled, self.kernels = apply_records(mod, target, tuning_records)
        self._device = tvm.cpu()
        self._main = relax.VirtualMachine(tvm.compile(mod, target=target), self._device)["main"]
        self._tensor = tvm.runtime.tensor

    def __call__(self, arrays: list) -> list:
        result = self._main(*(self._tensor(np.ascontiguousarray(arrays[i]), self._device) for i in self._order))
        results = [result] if self._single else list(result)
        return [results[i].numpy() for i in self._pick]


def input_shapes(model) -> dict[str, list[int]]:
    """Static shapes of a model's graph inputs (initializers excluded); HwlatError naming those without one."""
    constants = {tensor.name for tensor in model.graph.initializer}
    shapes = {value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
              for value in model.graph.input if value.name not in constants}
    dynamic = [name for name, shape in shapes.items() if not all(dim > 0 for dim in shape)]
    if dynamic:
        raise HwlatError(f"tvm: inputs {', '.join(dynamic)} have no static shape")
    return shapes


def tensor_values(model, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Values of the named tensors of `model` (shapes inferred) for `feeds`, from one ONNX Runtime run."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {value.name: value for value in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    present = {value.name for value in model.graph.output}
    model.graph.output.extend(known[name] for name in names if name not in present and name in known)
    values = dict(feeds)
    wanted = [name for name in dict.fromkeys(names) if name not in feeds]
    values.update(zip(wanted, session(model.SerializeToString(), optimization="disable").run(wanted, feeds)))
    return {name: values[name] for name in names}
