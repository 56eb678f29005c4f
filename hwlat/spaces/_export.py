"""ONNX export of space architectures, cached on disk so each network is exported once per machine."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from hwlat._home import hwlat_home

if TYPE_CHECKING:
    import torch

    from hwlat.spaces._base import BaseSpace

OPSET = 17


def export_onnx(model: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    """Export `model` to ONNX at `path` (input "input", output "logits", dynamic batch), written atomically."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # the legacy (TorchScript) exporter is deprecated but needs no extra dependencies
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                model,
                (torch.zeros(input_shape),),
                tmp_name,
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def onnx_path(space: BaseSpace, arch: str, cache_dir: str | Path | None = None) -> Path:
    """Path of the cached ONNX file of `arch`, exporting it first if missing (safe across processes)."""
    canonical = space.canonical(arch)
    folder = Path(cache_dir) if cache_dir is not None else hwlat_home() / "cache" / "onnx" / space.name
    path = folder / f"{hashlib.sha256(canonical.encode()).hexdigest()[:20]}.onnx"
    if not path.exists():
        # concurrent exporters each write their own temp file; os.replace makes the last one win whole
        export_onnx(space.build(canonical), space.input_shape(1), path)
    return path
