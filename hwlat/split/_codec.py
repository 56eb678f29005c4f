"""Tensors to bytes and back: a JSON header, then raw, fp16 or int8 (affine, per tensor) payloads."""

from __future__ import annotations

import json
import struct

import numpy as np

from hwlat.split._cuts import check_compression

_LENGTH = struct.Struct("<I")


def encode(arrays: list[np.ndarray], compression: str = "none") -> bytes:
    """One message holding `arrays`; floating-point arrays are compressed as asked."""
    check_compression(compression)
    header, payloads = [], []
    for array in arrays:
        array = np.ascontiguousarray(array)
        entry = {"dtype": array.dtype.str, "shape": list(array.shape), "codec": "raw"}
        if array.dtype.kind == "f" and compression == "fp16":
            entry["codec"], array = "fp16", array.astype(np.float16)
        elif array.dtype.kind == "f" and compression == "int8":
            low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
            scale = (high - low) / 255 or 1.0
            entry.update(codec="int8", scale=scale, offset=low)
            array = np.rint((array - low) / scale).astype(np.uint8)
        header.append(entry)
        payloads.append(array.tobytes())
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_LENGTH.pack(len(head)), head, *payloads])


def decode(message: bytes | memoryview) -> list[np.ndarray]:
    """The arrays of a message made by `encode` (compressed ones restored to their dtype)."""
    view = memoryview(message)
    (length,) = _LENGTH.unpack_from(view)
    header = json.loads(bytes(view[_LENGTH.size:_LENGTH.size + length]))
    position = _LENGTH.size + length
    arrays = []
    for entry in header:
        dtype, shape = np.dtype(entry["dtype"]), tuple(entry["shape"])
        stored = {"raw": dtype, "fp16": np.dtype(np.float16), "int8": np.dtype(np.uint8)}[entry["codec"]]
        count = int(np.prod(shape))
        array = np.frombuffer(view, dtype=stored, count=count, offset=position).reshape(shape)
        position += count * stored.itemsize
        if entry["codec"] == "int8":
            array = (array.astype(dtype) * dtype.type(entry["scale"]) + dtype.type(entry["offset"]))
        elif entry["codec"] == "fp16":
            array = array.astype(dtype)
        arrays.append(array)
    return arrays
