"""HELP's dataset layout read from any folder: `<space>/latency/<device>.pt` plus each space's arch list."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError
from hwlat.datasets._dataset import LatencyDataset
from hwlat.datasets._safe import NUMPY_SCALARS, safe_load
from hwlat.spaces import get_space

#: HELP's folder name of each space hwlat reads
HELP_FOLDERS: dict[str, str] = {"nb201": "nasbench201", "fbnet": "fbnet", "ofa": "ofa"}


def _space_folder(root: Path, space: str) -> Path:
    """`root` itself when it holds `latency/`, else HELP's `<root>/<space folder>`."""
    for folder in (root, root / HELP_FOLDERS[space]):
        if (folder / "latency").is_dir():
            return folder
    raise HwlatError(f"no HELP {space} data under {root} (expected {root / HELP_FOLDERS[space] / 'latency'}/*.pt)")


def _entries(data: object, path: Path) -> list:
    """The per-arch list of a HELP arch file: a list, or a dict's 'arch' list."""
    entries = data.get("arch") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise HwlatError(f"{path}: expected a list of architectures or a dict with an 'arch' list")
    return entries


def _archs(folder: Path, space: str) -> tuple[str, ...]:
    """Canonical strings of the dataset's architectures in file order."""
    spec = get_space(space)
    if space == "nb201":
        path = folder / "str_arch2idx.pt"
        if not path.exists():
            return tuple(spec.enumerate())
        mapping = safe_load(path)
        if not isinstance(mapping, dict):
            raise HwlatError(f"{path}: expected a dict arch string -> index")
        archs = [spec.canonical(a) for a, _ in sorted(mapping.items(), key=lambda item: item[1])]
        if sorted(mapping.values()) != list(range(len(mapping))):
            raise HwlatError(f"{path}: indices are not 0..{len(mapping) - 1}")
        return tuple(archs)
    if space == "fbnet":
        path = folder / "metainfo.pt"
        entries = _entries(safe_load(path, NUMPY_SCALARS), path)
        return tuple(spec.from_indices(e["op_idx_list"] if isinstance(e, dict) else e) for e in entries)
    path = folder / "ofa_archs.pt"
    return tuple(spec.from_config(e) for e in _entries(safe_load(path, NUMPY_SCALARS), path))


def _latencies(path: Path, count: int) -> np.ndarray:
    values = safe_load(path, NUMPY_SCALARS)
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise HwlatError(f"{path}: expected a list of latencies in ms") from None
    if array.shape != (count,):
        raise HwlatError(f"{path}: {array.size} latencies, expected one per architecture ({count})")
    return array


def load_help(root: str | os.PathLike, space: str) -> LatencyDataset:
    """The HELP dataset of `space` ("nb201", "fbnet", "ofa") under `root` (HELP's `data/` or the space folder).

    Devices are every `latency/*.pt` file present, whatever its name; reference archs come from
    `hardware_embedding_index.pt` when the folder has one.
    """
    space = get_space(space).name
    if space not in HELP_FOLDERS:
        raise HwlatError(f"HELP has no {space} dataset (spaces: {', '.join(HELP_FOLDERS)})")
    folder = _space_folder(Path(root), space)
    archs = _archs(folder, space)
    files = sorted((folder / "latency").glob("*.pt"))
    if not files:
        raise HwlatError(f"{folder / 'latency'} holds no <device>.pt files")
    latency = {f.stem: _latencies(f, len(archs)) for f in files}
    index_path = folder / "hardware_embedding_index.pt"
    references = tuple(int(i) for i in safe_load(index_path)) if index_path.exists() else ()
    return LatencyDataset(space, archs, latency, references)


def load_dataset(path: str | os.PathLike, space: str) -> LatencyDataset:
    """A HELP-layout folder, or a measurement table exported by `hwlat data export` (.csv / .parquet)."""
    path = Path(path)
    if path.is_dir():
        return load_help(path, space)
    readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet}
    if path.suffix not in readers or not path.exists():
        raise HwlatError(f"{path}: expected a HELP data folder or a .csv/.parquet measurement table")
    return LatencyDataset.from_frame(readers[path.suffix](path), get_space(space).name)
