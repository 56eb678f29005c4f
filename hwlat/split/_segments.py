"""Cut a shape-inferred ONNX model into segments between two cut points, and run them."""

from __future__ import annotations

import numpy as np

from hwlat._errors import HwlatError
from hwlat.split._cuts import CutPoint


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
