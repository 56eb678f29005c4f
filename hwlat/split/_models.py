"""Model specs of `hwlat split`: `SPACE:ARCH` (any hwlat space), `resnet:18|34`, `onnx:PATH`, as ONNX files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwlat._errors import HwlatError
from hwlat._home import hwlat_home


@dataclass(frozen=True)
class SplitModel:
    """An ONNX file to split, and the spec it came from."""

    spec: str
    path: Path

    def load(self):
        """The ONNX ModelProto (HwlatError if the file is not a valid ONNX model)."""
        import onnx

        try:
            return onnx.load(str(self.path))
        except Exception as exc:  # protobuf DecodeError and friends
            raise HwlatError(f"{self.path} is not a readable ONNX model ({type(exc).__name__})") from None


def resolve_model(spec: str) -> SplitModel:
    """The ONNX file for a model spec, exported (and cached under $HWLAT_HOME) for torch models."""
    from hwlat.spaces import SPACES, get_space

    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise HwlatError(f"model spec {spec!r} must be KIND:VALUE, e.g. nb201:ARCH, resnet:18 or onnx:PATH")
    if kind == "onnx":
        path = Path(rest).expanduser()
        if not path.is_file():
            raise HwlatError(f"model file {rest!r} does not exist")
        return SplitModel(spec, path)
    if kind == "resnet":
        from hwlat.spaces._export import export_onnx
        from hwlat.split._resnet import DEPTHS, cifar_resnet

        if not rest.isdigit() or int(rest) not in DEPTHS:
            raise HwlatError(f"resnet depth must be one of {', '.join(map(str, DEPTHS))}, got {rest!r}")
        path = hwlat_home() / "cache" / "onnx" / "split-resnet" / f"resnet{rest}.onnx"
        if not path.exists():
            export_onnx(cifar_resnet(int(rest)), (1, 3, 32, 32), path)
        return SplitModel(spec, path)
    if kind in SPACES or kind == "nasbench201":
        from hwlat.spaces._export import onnx_path

        return SplitModel(spec, onnx_path(get_space(kind), rest))
    raise HwlatError(f"unknown model kind {kind!r} in {spec!r} (known: onnx, resnet, {', '.join(SPACES)})")


def example_inputs(model) -> dict[str, np.ndarray]:
    """Seeded inputs for every graph input of a shape-inferred model (floats standard-normal, integers zero)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    initializers = {init.name for init in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = tuple(d.dim_value for d in tensor.shape.dim)
        dtype = np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type))
        feeds[value.name] = (rng.standard_normal(shape).astype(dtype) if dtype.kind == "f"
                             else np.zeros(shape, dtype=dtype))
    return feeds
