"""Unpickling of `torch.save` files from users: tensors and plain containers only, plus an explicit allow-list."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import torch

from hwlat._errors import HwlatError

#: numpy scalars, as HELP's `ofa_archs.pt` pickles them (numpy 1.x path) and as numpy 2 pickles them
NUMPY_SCALARS: tuple = (
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    np._core.multiarray.scalar,
    np.dtype,
    np.dtypes.Int32DType,
    np.dtypes.Int64DType,
    np.dtypes.Float32DType,
    np.dtypes.Float64DType,
)


def safe_load(path: str | os.PathLike, allowed: tuple = ()) -> object:
    """`torch.load(path, weights_only=True)` plus only the `allowed` globals; HwlatError if refused or unreadable."""
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "global" in line.lower()),
                      "content outside the allow-list")
        raise HwlatError(f"{path}: refused to unpickle ({reason})") from None
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise HwlatError(f"{path}: not a readable torch.save file ({str(error).splitlines()[0]})") from None
