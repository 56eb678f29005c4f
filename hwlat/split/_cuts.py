"""Where an ONNX graph can be cut: positions in its node order where few tensors cross, with their bytes.

Initializers, Constant nodes and nodes computed from them only ("static" nodes: weights reshaped or
transposed by the exporter) never cross a cut: each segment recomputes or holds the ones it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwlat._errors import HwlatError

#: compression of the crossing tensors: bytes per element of a floating-point tensor, None = its dtype's size
COMPRESSIONS: dict[str, int | None] = {"none": None, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class CutPoint:
    """A cut after `index` compute nodes (0: before the first, the model's input crosses)."""

    index: int
    after: str
    tensors: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the crossing tensors, uncompressed."""
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in zip(self.shapes, self.dtypes))

    def compressed_bytes(self, compression: str = "none") -> int:
        """Payload bytes after `compression` (floating-point tensors only; int8 adds a scale and an offset)."""
        check_compression(compression)
        size = COMPRESSIONS[compression]
        total = 0
        for shape, dtype in zip(self.shapes, self.dtypes):
            count, kind = int(np.prod(shape)), np.dtype(dtype)
            if size is None or kind.kind != "f":
                total += count * kind.itemsize
            else:
                total += count * size + (8 if compression == "int8" else 0)
        return total


def check_compression(compression: str) -> None:
    """HwlatError unless `compression` is a known codec."""
    if compression not in COMPRESSIONS:
        raise HwlatError(f"unknown compression {compression!r} (expected one of {', '.join(COMPRESSIONS)})")


def static_shapes(model, batch_size: int = 1):
    """A copy of `model` with symbolic input/output dims set to `batch_size` and every tensor shape inferred."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") or not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = batch_size
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError and others for inconsistent graphs
        raise HwlatError(f"cannot infer tensor shapes of the model: {str(exc).strip().splitlines()[0]}") from None


def compute_nodes(model) -> tuple[list, set[str]]:
    """(nodes that depend on a graph input, in graph order; names of static tensors)."""
    graph = model.graph
    static = {init.name for init in graph.initializer} | {""}
    static |= {value.name for value in graph.input if value.name in static}
    computed = []
    for node in graph.node:
        if all(name in static for name in node.input) and node.op_type not in ("RandomNormal", "RandomUniform"):
            static.update(node.output)
        else:
            computed.append(node)
    return computed, static


def _tensor_types(model) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shape and numpy dtype name of every typed tensor of an inferred model."""
    from onnx.helper import tensor_dtype_to_np_dtype

    types = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        if tensor.elem_type:
            types[value.name] = (dims, np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)).name)
    return types


def find_cuts(model, max_tensors: int = 1) -> list[CutPoint]:
    """Every position of `model` (shapes inferred) where 1..`max_tensors` non-static tensors cross, in order.

    Position 0 (only the inputs cross) and the last position (only the outputs) are always included.
    """
    if max_tensors < 1:
        raise HwlatError(f"max_tensors must be >= 1, got {max_tensors}")
    nodes, static = compute_nodes(model)
    if not nodes:
        raise HwlatError("the model has no node that depends on its input: nothing to split")
    outputs = [value.name for value in model.graph.output]
    last_use: dict[str, int] = {name: len(nodes) for name in outputs}
    for position, node in enumerate(nodes):
        for name in node.input:
            if name not in static:
                last_use[name] = max(last_use.get(name, -1), position)
    types = _tensor_types(model)
    live = [value.name for value in model.graph.input if value.name not in static]
    cuts = []
    for index in range(len(nodes) + 1):
        if index > 0:
            live = [name for name in live if last_use.get(name, -1) >= index]
            live += [name for name in nodes[index - 1].output if last_use.get(name, -1) >= index]
        if not 1 <= len(live) <= max_tensors and index not in (0, len(nodes)):
            continue
        unknown = [name for name in live if name not in types or -1 in types[name][0]]
        if unknown:
            raise HwlatError(f"cannot infer the shape of tensor {unknown[0]!r}: export the model with static shapes")
        cuts.append(CutPoint(index=index, after=(nodes[index - 1].name or nodes[index - 1].op_type) if index else "input",
                             tensors=tuple(live), shapes=tuple(types[n][0] for n in live),
                             dtypes=tuple(types[n][1] for n in live)))
    return cuts
