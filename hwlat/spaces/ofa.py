"""Once-for-All MobileNetV3: 5 stages of 2-4 layers, each layer a kernel size and expand ratio, plus resolution."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence

import numpy as np

from hwlat._errors import HwlatError
from hwlat.spaces._base import BaseSpace
from hwlat.spaces.nasbench201 import _arch_seed

KERNEL_SIZES: tuple[int, ...] = (3, 5, 7)
EXPAND_RATIOS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
#: input resolutions of HELP's OFA dataset: 128..224 in steps of 4
RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))
NUM_STAGES = 5
MAX_DEPTH = 4

_PATTERN = re.compile(r"^ks=([\d,]+);e=([\d,]+);d=([\d,]+);r=(\d+)$")


def _ints(values: object, what: str, count: int) -> tuple[int, ...]:
    try:
        out = tuple(map(operator.index, values))
    except TypeError:
        raise HwlatError(f"ofa {what} must be integers, got {values!r}") from None
    if len(out) != count:
        raise HwlatError(f"ofa {what} needs {count} values, got {len(out)}")
    return out


def _layers(ks: Sequence[int], e: Sequence[int], d: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Kernel sizes and expand ratios with the layers beyond each stage's depth set to 0 (they do not exist)."""
    ks_out, e_out = list(ks), list(e)
    for stage, depth in enumerate(d):
        for layer in range(stage * MAX_DEPTH + depth, (stage + 1) * MAX_DEPTH):
            ks_out[layer] = e_out[layer] = 0
    return tuple(ks_out), tuple(e_out)


def _parse(arch: object) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    """(ks, e, d, r) of `arch` with inactive layers zeroed; HwlatError naming the first problem."""
    if not isinstance(arch, str):
        raise HwlatError(f"ofa arch must be a string, got {type(arch).__name__} {arch!r}")
    match = _PATTERN.match(arch.strip())
    if not match:
        raise HwlatError(f"ofa arch {arch!r} is not of the form 'ks=..;e=..;d=..;r=..' (comma-separated integers)")
    ks, e, d = (tuple(int(v) for v in group.split(",") if v) for group in match.groups()[:3])
    return _validated(ks, e, d, int(match.group(4)))


def _validated(ks, e, d, r) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    layers = NUM_STAGES * MAX_DEPTH
    ks, e, d = _ints(ks, "ks", layers), _ints(e, "e", layers), _ints(d, "d", NUM_STAGES)
    r = _ints([r], "r", 1)[0]
    if any(v not in DEPTHS for v in d):
        raise HwlatError(f"ofa depths {d} must each be one of {DEPTHS}")
    if r not in RESOLUTIONS:
        raise HwlatError(f"ofa resolution {r} must be one of {RESOLUTIONS[0]}..{RESOLUTIONS[-1]} in steps of 4")
    active = [stage * MAX_DEPTH + i for stage, depth in enumerate(d) for i in range(depth)]
    for layer in active:
        if ks[layer] not in KERNEL_SIZES or e[layer] not in EXPAND_RATIOS:
            raise HwlatError(f"ofa layer {layer}: kernel {ks[layer]} / expand {e[layer]} not in "
                             f"{KERNEL_SIZES} / {EXPAND_RATIOS}")
    ks, e = _layers(ks, e, d)
    return ks, e, d, r


def _format(ks, e, d, r) -> str:
    return f"ks={','.join(map(str, ks))};e={','.join(map(str, e))};d={','.join(map(str, d))};r={r}"


class OFASpace(BaseSpace):
    """OFA MobileNetV3 subnets, written 'ks=..;e=..;d=..;r=..' with 0 for layers beyond a stage's depth."""

    name = "ofa"

    def canonical(self, arch: str) -> str:
        """Validate `arch` and return its canonical string (inactive layers zeroed)."""
        return _format(*_parse(arch))

    def from_config(self, config: Mapping[str, object]) -> str:
        """Canonical string of an OFA config dict with keys ks, e, d, r (HELP's `ofa_archs.pt` entries)."""
        try:
            return _format(*_validated(config["ks"], config["e"], config["d"], config["r"]))
        except (KeyError, TypeError):
            raise HwlatError(f"ofa config must be a mapping with keys ks, e, d, r, got {config!r}") from None

    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """`n` subnets with every choice drawn uniformly (repeats are negligible in this space)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise HwlatError(f"ofa sample size {n!r} must be a positive integer")
        rng = np.random.default_rng(seed)
        layers = NUM_STAGES * MAX_DEPTH
        return [_format(*_validated(rng.choice(KERNEL_SIZES, layers), rng.choice(EXPAND_RATIOS, layers),
                                    rng.choice(DEPTHS, NUM_STAGES), rng.choice(RESOLUTIONS))) for _ in range(n)]

    def encode(self, archs: Sequence[str], kind: str = "onehot") -> np.ndarray:
        """Float32 rows as HELP's OFA encoding: one-hot kernel size and expand ratio per layer (all zero for an
        inactive layer), then the resolution scaled to 0..1."""
        if kind != "onehot":
            raise HwlatError(f"ofa encoding kind {kind!r} unknown (expected onehot)")
        if isinstance(archs, str):
            raise HwlatError("ofa encode expects a sequence of arch strings, got a single string")
        layers = NUM_STAGES * MAX_DEPTH
        ks, e, _, r = _columns(archs)
        out = np.zeros((len(archs), 6 * layers + 1), dtype=np.float32)
        out[:, :3 * layers] = (ks[:, :, None] == KERNEL_SIZES).reshape(len(archs), -1)  # 0 (inactive) matches none
        out[:, 3 * layers:-1] = (e[:, :, None] == EXPAND_RATIOS).reshape(len(archs), -1)
        out[:, -1] = (r - RESOLUTIONS[0]) / (RESOLUTIONS[-1] - RESOLUTIONS[0])
        return out

    def resolution(self, arch: str) -> int:
        """Input resolution of `arch`."""
        return _parse(arch)[3]

    def build(self, arch: str):  # -> torch.nn.Module
        """The Once-for-All MobileNetV3-Large subnet of `arch` (1000 classes; feed it `resolution(arch)`-sized
        images), weights seeded from the arch, in eval mode."""
        import torch

        from hwlat.spaces._ofa_model import OFAMobileNetV3

        canonical = self.canonical(arch)
        ks, e, d, _ = _parse(canonical)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_arch_seed(canonical))
            model = OFAMobileNetV3(ks, e, d)
        return model.eval()

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """The largest input, (batch, 3, 224, 224); each arch's own size is `resolution(arch)`."""
        return (batch_size, 3, RESOLUTIONS[-1], RESOLUTIONS[-1])

    def flops(self, arch: str) -> int:
        """Conv and linear multiply-adds at batch 1 and the arch's own resolution (see `count_flops`), in closed
        form (equal to counting the built network); `counts` gives many archs at once."""
        return int(self.counts([arch])[0][0])

    def params(self, arch: str) -> int:
        """Trainable parameters including BatchNorm affine terms (independent of the resolution)."""
        return int(self.counts([arch])[1][0])

    def counts(self, archs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, params) of each of `archs` as int64 arrays, in closed form over all of them at once (5,000
        archs in about 0.1 s, mostly parsing the strings)."""
        from hwlat.spaces._ofa_model import counts

        if isinstance(archs, str):
            raise HwlatError("ofa counts expects a sequence of arch strings, got a single string")
        return counts(*_columns(archs))


def _columns(archs: Sequence[str]) -> tuple[np.ndarray, ...]:
    """ks (N, 20), e (N, 20) (0 for inactive layers), d (N, 5) and r (N,) of `archs` as int64 arrays."""
    parsed = [_parse(a) for a in archs]
    shapes = (NUM_STAGES * MAX_DEPTH, NUM_STAGES * MAX_DEPTH, NUM_STAGES)
    return (*(np.array([p[k] for p in parsed], dtype=np.int64).reshape(-1, n) for k, n in enumerate(shapes)),
            np.array([p[3] for p in parsed], dtype=np.int64))
