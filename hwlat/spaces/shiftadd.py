"""ShiftAdd choices of a ViT: per block, the attention primitive and the MLP primitive (ShiftAddViT's decisions).

An arch names each block's choice as `attention+mlp`, blocks joined by '|', e.g.
'softmax+dense|binary+shift|...' (12 blocks). The same string means the same network for every shape in
`hwlat.shiftadd.MODELS` (they share the depth): the search reads accuracy on the small digits ViT and latency
and energy on DeiT-Tiny's shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from hwlat._errors import HwlatError
from hwlat.shiftadd._config import ATTENTION_KINDS, MLP_KINDS, BlockChoice, get_model_config
from hwlat.spaces._base import BaseSpace

BLOCK_SEPARATOR = "|"
PART_SEPARATOR = "+"


class ShiftAddSpace(BaseSpace):
    """Per-block {softmax, binary, binary-linear} attention x {dense, shift, moe} MLP of a ViT shape."""

    name = "shiftadd"

    def __init__(self, model: str = "vit-tiny") -> None:
        self.model = model
        self.config = get_model_config(model)

    def blocks(self, arch: str) -> tuple[BlockChoice, ...]:
        """The per-block choices of `arch`; HwlatError naming the first wrong block."""
        if not isinstance(arch, str):
            raise HwlatError(f"shiftadd arch must be a string, got {type(arch).__name__} {arch!r}")
        parts = arch.strip().split(BLOCK_SEPARATOR)
        if len(parts) != self.config.depth:
            raise HwlatError(f"shiftadd arch {arch!r}: {len(parts)} block(s) separated by {BLOCK_SEPARATOR!r}, "
                             f"expected {self.config.depth}")
        blocks = []
        for index, part in enumerate(parts):
            attention, plus, mlp = part.strip().partition(PART_SEPARATOR)
            if not plus:
                raise HwlatError(f"shiftadd arch block {index} {part!r} is not ATTENTION{PART_SEPARATOR}MLP")
            try:
                blocks.append(BlockChoice(attention, mlp))
            except HwlatError as error:
                raise HwlatError(f"shiftadd arch block {index}: {error}") from None
        return tuple(blocks)

    def from_blocks(self, blocks: Sequence[BlockChoice]) -> str:
        """Canonical string of per-block choices."""
        if len(blocks) != self.config.depth:
            raise HwlatError(f"shiftadd arch needs {self.config.depth} blocks, got {len(blocks)}")
        return BLOCK_SEPARATOR.join(f"{b.attention}{PART_SEPARATOR}{b.mlp}" for b in blocks)

    def canonical(self, arch: str) -> str:
        """Validate `arch` and return its canonical string."""
        return self.from_blocks(self.blocks(arch))

    def choices(self) -> dict[str, tuple[str, ...]]:
        """Two decisions per block: ``"attention00"``.. and ``"mlp00"``..."""
        decisions: dict[str, tuple[str, ...]] = {}
        for i in range(self.config.depth):
            decisions[f"attention{i:02d}"] = ATTENTION_KINDS
            decisions[f"mlp{i:02d}"] = MLP_KINDS
        return decisions

    def from_choices(self, chosen: Mapping[str, str]) -> str:
        """The arch whose block i takes ``chosen["attentionII"]`` and ``chosen["mlpII"]``."""
        return self.from_blocks([BlockChoice(str(chosen.get(f"attention{i:02d}")), str(chosen.get(f"mlp{i:02d}")))
                                 for i in range(self.config.depth)])

    def to_choices(self, arch: str) -> dict[str, str]:
        """The decisions of `arch`, keyed like `choices()`."""
        chosen = {}
        for i, block in enumerate(self.blocks(arch)):
            chosen[f"attention{i:02d}"], chosen[f"mlp{i:02d}"] = block.attention, block.mlp
        return chosen

    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """`n` architectures with every decision drawn uniformly (9^12 archs: repeats are negligible)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise HwlatError(f"shiftadd sample size {n!r} must be a positive integer")
        rng = np.random.default_rng(seed)
        attention = rng.integers(len(ATTENTION_KINDS), size=(n, self.config.depth))
        mlp = rng.integers(len(MLP_KINDS), size=(n, self.config.depth))
        return [self.from_blocks([BlockChoice(ATTENTION_KINDS[a], MLP_KINDS[m]) for a, m in zip(row_a, row_m)])
                for row_a, row_m in zip(attention, mlp)]

    def encode(self, archs: Sequence[str], kind: str = "onehot") -> np.ndarray:
        """Float32 one-hot rows: per block, its attention kind then its MLP kind."""
        if kind != "onehot":
            raise HwlatError(f"shiftadd encoding kind {kind!r} unknown (expected onehot)")
        if isinstance(archs, str):
            raise HwlatError("shiftadd encode expects a sequence of arch strings, got a single string")
        width = len(ATTENTION_KINDS) + len(MLP_KINDS)
        out = np.zeros((len(archs), self.config.depth * width), dtype=np.float32)
        for row, arch in enumerate(archs):
            for i, block in enumerate(self.blocks(arch)):
                out[row, i * width + ATTENTION_KINDS.index(block.attention)] = 1
                out[row, i * width + len(ATTENTION_KINDS) + MLP_KINDS.index(block.mlp)] = 1
        return out

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """Images of the model's shape: (batch, channels, size, size)."""
        return (batch_size, self.config.channels, self.config.image_size, self.config.image_size)

    def build(self, arch: str):  # -> torch.nn.Module
        """A freshly initialised ViT of this shape with `arch`'s primitives (seeded from the arch), in eval mode.

        Trained weights come from `hwlat.shiftadd.reparameterize` of a trained original instead.
        """
        import torch

        from hwlat.shiftadd._vit import build_vit

        canonical = self.canonical(arch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big") >> 1)
            return build_vit(self.config, self.blocks(canonical)).eval()

    def flops(self, arch: str) -> int:
        """fp32 multiplications left in one forward pass at batch 1 (what shift and add primitives remove),
        from the op counts of the energy estimate (a multiply-add counts once)."""
        from hwlat.shiftadd._energy import PAPER_SHIFT_FRACTION, estimate_energy

        return int(round(estimate_energy(self.config, self.blocks(arch), PAPER_SHIFT_FRACTION).ops["fp32_mult"]))

    def params(self, arch: str) -> int:
        """Trainable parameters of `build(arch)`."""
        from hwlat.spaces._counting import count_params

        return count_params(self.build(arch))
