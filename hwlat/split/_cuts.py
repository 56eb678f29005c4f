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
    """A copy of `model` with symbolic input/output dims set to `batch_size` and every tensor shape inferred.

    A batch above 1 needs every graph input's first dimension symbolic (a model exported with a dynamic batch).
    """
    import onnx

    if batch_size < 1:
        raise HwlatError(f"batch size must be >= 1, got {batch_size}")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if batch_size > 1 and value.name not in initializers and dims and dims[0].HasField("dim_value"):
            raise HwlatError(f"model input {value.name!r} has a fixed first dimension of {dims[0].dim_value}: a batch "
                             f"of {batch_size} needs a model exported with a dynamic batch dimension")
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


def _positions(model):
    """(index, the compute node before or None, crossing tensors) at every position between compute nodes."""
    nodes, static = compute_nodes(model)
    if not nodes:
        raise HwlatError("the model has no node that depends on its input: nothing to split")
    outputs = [value.name for value in model.graph.output]
    last_use: dict[str, int] = {name: len(nodes) for name in outputs}
    for position, node in enumerate(nodes):
        for name in node.input:
            if name not in static:
                last_use[name] = max(last_use.get(name, -1), position)
    live = [value.name for value in model.graph.input if value.name not in static]
    yield 0, None, tuple(live)
    for index in range(1, len(nodes) + 1):
        live = [name for name in live if last_use.get(name, -1) >= index]
        live += [name for name in nodes[index - 1].output if last_use.get(name, -1) >= index]
        yield index, nodes[index - 1], tuple(live)


def find_cuts(model, max_tensors: int = 1) -> list[CutPoint]:
    """Every position of `model` (shapes inferred) where 1..`max_tensors` non-static tensors cross, in order.

    Position 0 (only the inputs cross) and the last position (only the outputs) are always included.
    """
    if max_tensors < 1:
        raise HwlatError(f"max_tensors must be >= 1, got {max_tensors}")
    types = _tensor_types(model)
    positions = list(_positions(model))
    cuts = []
    for index, node, live in positions:
        if not 1 <= len(live) <= max_tensors and index not in (0, len(positions) - 1):
            continue
        unknown = [name for name in live if name not in types or -1 in types[name][0]]
        if unknown:
            raise HwlatError(f"cannot infer the shape of tensor {unknown[0]!r}: export the model with static shapes")
        cuts.append(CutPoint(index=index, after=(node.name or node.op_type) if node else "input", tensors=live,
                             shapes=tuple(types[n][0] for n in live), dtypes=tuple(types[n][1] for n in live)))
    return cuts


def locate_cuts(model, cuts: list[CutPoint], names: list[str], max_tensors: int = 1) -> list[int]:
    """Positions in `cuts` of the named cut points: the node a cut follows, or the one tensor crossing it.

    HwlatError naming the first name that is no valid cut: unknown, a node computing constants only, or a
    node after which more than `max_tensors` tensors cross (inside a branch or a skip connection).
    """
    by_node = {cut.after: position for position, cut in enumerate(cuts)}
    by_tensor: dict[str, int] = {}
    for position, cut in enumerate(cuts):
        if len(cut.tensors) == 1:
            by_tensor.setdefault(cut.tensors[0], position)
    found = []
    for name in names:
        if sum(cut.after == name for cut in cuts) > 1:
            raise HwlatError(f"cut {name!r} names {sum(cut.after == name for cut in cuts)} cut points (unnamed nodes "
                             f"are listed by type): use the tensor crossing it instead (see --list-cuts)")
        if name in by_node or name in by_tensor:
            found.append(by_node.get(name, by_tensor.get(name)))
            continue
        crossing = {tuple(node.output): live for _, node, live in _positions(model) if node is not None}
        named = {node.name: node for node in model.graph.node if node.name}
        node = named.get(name) or next((n for n in model.graph.node if name in n.output), None)
        if node is None:
            raise HwlatError(f"cut {name!r}: no node or tensor of that name in the model (see --list-cuts)")
        label = node.name or node.op_type
        if tuple(node.output) not in crossing:
            raise HwlatError(f"cut {name!r} is not a valid cut point: node {label!r} computes constants only")
        live = crossing[tuple(node.output)]
        raise HwlatError(f"cut {name!r} is not a valid cut point: {len(live)} tensors cross after node {label!r} "
                         f"({', '.join(live[:4])}{', ...' if len(live) > 4 else ''}), at most {max_tensors} allowed "
                         f"(see --list-cuts)")
    return found
