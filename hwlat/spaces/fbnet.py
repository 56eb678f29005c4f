"""FBNet (HW-NAS-Bench's CIFAR-100 variant): 22 searchable layers, each one of 9 candidate blocks."""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Mapping, Sequence

import numpy as np

from hwlat._errors import HwlatError
from hwlat.spaces._base import BaseSpace

#: candidate blocks in HELP's / HW-NAS-Bench's vocabulary order (the position is the op index)
OPS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")

#: number of searchable layers
NUM_LAYERS = 22

_INDEX = {op: i for i, op in enumerate(OPS)}


def _parse(arch: object) -> tuple[int, ...]:
    """Op indices of `arch` ('-'-joined op names); HwlatError naming the first problem."""
    if not isinstance(arch, str):
        raise HwlatError(f"fbnet arch must be a string, got {type(arch).__name__} {arch!r}")
    names = arch.strip().split("-")
    if len(names) != NUM_LAYERS:
        raise HwlatError(f"fbnet arch {arch!r}: {len(names)} layer(s) separated by '-', expected {NUM_LAYERS}")
    try:
        return tuple(_INDEX[name] for name in names)
    except KeyError as error:
        layer = names.index(error.args[0])
        raise HwlatError(f"fbnet arch {arch!r}: layer {layer} op {error.args[0]!r} unknown "
                         f"(expected one of {', '.join(OPS)})") from None


class FBNetSpace(BaseSpace):
    """22 layers x 9 blocks; archs are their op names joined by '-', e.g. 'k3_e6-skip-...'."""

    name = "fbnet"

    def canonical(self, arch: str) -> str:
        """Validate `arch` and return its canonical string."""
        return self.from_indices(_parse(arch))

    def from_indices(self, op_indices: Sequence[int]) -> str:
        """Canonical string of the arch with these 22 op indices (HELP's `op_idx_list`)."""
        try:
            ops = [OPS[operator.index(i)] for i in op_indices]
        except (TypeError, IndexError):
            raise HwlatError(f"fbnet op indices {list(op_indices)!r} must be integers in 0..{len(OPS) - 1}") from None
        if len(ops) != NUM_LAYERS:
            raise HwlatError(f"fbnet arch needs {NUM_LAYERS} op indices, got {len(ops)}")
        return "-".join(ops)

    def choices(self) -> dict[str, tuple[str, ...]]:
        """One decision per layer, named ``"layer00"``..``"layer21"``, with the 9 blocks as options."""
        return {f"layer{i:02d}": OPS for i in range(NUM_LAYERS)}

    def from_choices(self, chosen: Mapping[str, str]) -> str:
        """The arch whose layer ``"layerNN"`` carries block ``chosen["layerNN"]``."""
        return self.canonical("-".join(str(chosen.get(f"layer{i:02d}")) for i in range(NUM_LAYERS)))

    def to_choices(self, arch: str) -> dict[str, str]:
        """The block of each layer of `arch`, keyed like `choices()`."""
        return {f"layer{i:02d}": OPS[op] for i, op in enumerate(_parse(arch))}

    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """`n` architectures with every layer's op drawn uniformly (9^22 archs: repeats are negligible)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise HwlatError(f"fbnet sample size {n!r} must be a positive integer")
        rows = np.random.default_rng(seed).integers(len(OPS), size=(n, NUM_LAYERS))
        return [self.from_indices(row) for row in rows]

    def encode(self, archs: Sequence[str], kind: str = "onehot") -> np.ndarray:
        """Float32 one-hot rows: column ``9 * layer + op`` is 1 when `layer` carries `OPS[op]`."""
        if kind != "onehot":
            raise HwlatError(f"fbnet encoding kind {kind!r} unknown (expected onehot)")
        if isinstance(archs, str):
            raise HwlatError("fbnet encode expects a sequence of arch strings, got a single string")
        indices = np.array([_parse(a) for a in archs], dtype=np.int64).reshape(-1, NUM_LAYERS)
        out = np.zeros((len(indices), NUM_LAYERS * len(OPS)), dtype=np.float32)
        rows = np.repeat(np.arange(len(indices)), NUM_LAYERS)
        out[rows, (np.arange(NUM_LAYERS) * len(OPS) + indices).ravel()] = 1
        return out

    def build(self, arch: str):  # -> torch.nn.Module
        """HW-NAS-Bench's FBNet CIFAR-100 network of `arch`, weights seeded from the arch, in eval mode."""
        import torch

        from hwlat.spaces._fbnet_model import FBNet

        canonical = self.canonical(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big") >> 1)
            model = FBNet([OPS[i] for i in _parse(canonical)])
        return model.eval()

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """CIFAR-100 images: (batch, 3, 32, 32)."""
        return (batch_size, 3, 32, 32)

    def flops(self, arch: str) -> int:
        """Conv and linear multiply-adds at batch 1 (see `count_flops`): layers are independent, so a sum of
        per-layer, per-block counts plus the fixed stem and head (equal to counting the built network)."""
        return _total(_count_table("flops"), _parse(arch))

    def params(self, arch: str) -> int:
        """Trainable parameters including BatchNorm affine terms, summed per layer like `flops`."""
        return _total(_count_table("params"), _parse(arch))


def _total(table: tuple[int, np.ndarray], indices: Sequence[int]) -> int:
    fixed, per_layer = table
    return int(fixed + per_layer[np.arange(NUM_LAYERS), list(indices)].sum())


@functools.lru_cache(maxsize=2)
def _count_table(count: str) -> tuple[int, np.ndarray]:
    """(fixed part, [layer, op] counts) of FLOPs or params, from each block built once at its input size."""
    from hwlat.spaces._counting import count_flops, count_params
    from torch import nn

    from hwlat.spaces._fbnet_model import (HEAD_CHANNELS, NUM_CLASSES, STAGE_CHANNELS, STEM_CHANNELS, conv_bn,
                                           layer_shapes, make_block)

    def measure(module, shape: tuple[int, ...]) -> int:
        return count_flops(module, shape) if count == "flops" else count_params(module)

    per_layer = np.zeros((NUM_LAYERS, len(OPS)), dtype=np.int64)
    size = 32
    for layer, (c_in, c_out, stride) in enumerate(layer_shapes()):
        for op_index, op in enumerate(OPS):
            per_layer[layer, op_index] = measure(make_block(op, c_in, c_out, stride), (1, c_in, size, size))
        size //= stride
    stem_head = (measure(conv_bn(3, STEM_CHANNELS, 3), (1, 3, 32, 32))
                 + measure(conv_bn(STAGE_CHANNELS[-1], HEAD_CHANNELS), (1, STAGE_CHANNELS[-1], size, size))
                 + measure(nn.Linear(HEAD_CHANNELS, NUM_CLASSES), (1, HEAD_CHANNELS)))
    return stem_head, per_layer
