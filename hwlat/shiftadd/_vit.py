"""A pre-norm ViT whose blocks each pick an attention primitive and an MLP primitive (`BlockChoice`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwlat._errors import HwlatError
from hwlat.shiftadd._attention import ATTENTIONS
from hwlat.shiftadd._config import BlockChoice, ViTConfig, uniform_choices
from hwlat.shiftadd._moe import PAPER_LATENCY, MoEMlp
from hwlat.shiftadd._shift import ShiftLinear


class Mlp(nn.Module):
    """`fc2(GELU(fc1(x)))` with `nn.Linear` or `ShiftLinear` layers."""

    def __init__(self, dim: int, hidden: int, shift: bool = False) -> None:
        super().__init__()
        linear = ShiftLinear if shift else nn.Linear
        self.fc1, self.act, self.fc2 = linear(dim, hidden), nn.GELU(), linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def make_mlp(kind: str, dim: int, hidden: int, moe_latency: Sequence[float] = PAPER_LATENCY) -> nn.Module:
    """An MLP of `kind` (see `_config.MLP_KINDS`); "moe" has experts [dense, shift]."""
    if kind == "moe":
        return MoEMlp([Mlp(dim, hidden), Mlp(dim, hidden, shift=True)], dim, moe_latency)
    return Mlp(dim, hidden, shift=kind == "shift")


class Block(nn.Module):
    """`x + attn(norm1(x))`, then `x + mlp(norm2(x))`."""

    def __init__(self, config: ViTConfig, choice: BlockChoice, moe_latency: Sequence[float] = PAPER_LATENCY) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim)
        self.attn = ATTENTIONS[choice.attention](config.dim, config.heads)
        self.norm2 = nn.LayerNorm(config.dim)
        self.mlp = make_mlp(choice.mlp, config.dim, config.hidden, moe_latency)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding, class token, learned positions, `config.depth` blocks, LayerNorm, linear head.

    `choices` records each block's primitives; `reparameterize` updates it when it converts blocks.
    """

    def __init__(self, config: ViTConfig, choices: Sequence[BlockChoice],
                 moe_latency: Sequence[float] = PAPER_LATENCY) -> None:
        super().__init__()
        self.config, self.choices = config, tuple(choices)
        self.patch = nn.Linear(config.channels * config.patch_size ** 2, config.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos = nn.Parameter(torch.zeros(1, config.tokens, config.dim))
        self.blocks = nn.ModuleList(Block(config, choice, moe_latency) for choice in self.choices)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, MoEMlp):
                module.reset_router()

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] images as [B, patches, C * p * p] rows."""
        batch, channels, height, width = images.shape
        p = self.config.patch_size
        grid = images.reshape(batch, channels, height // p, p, width // p, p).permute(0, 2, 4, 1, 3, 5)
        return grid.reshape(batch, (height // p) * (width // p), channels * p * p)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch(self.patches(images))
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def check_choices(config: ViTConfig, choices: Sequence[BlockChoice]) -> tuple[BlockChoice, ...]:
    """`choices` as a tuple, with a one-line error unless there is one `BlockChoice` per block."""
    choices = tuple(choices)
    if len(choices) != config.depth or not all(isinstance(c, BlockChoice) for c in choices):
        raise HwlatError(f"shiftadd: need {config.depth} BlockChoice values (one per block), got {len(choices)}")
    return choices


def build_vit(config: ViTConfig, choices: Sequence[BlockChoice] | None = None,
              moe_latency: Sequence[float] = PAPER_LATENCY) -> VisionTransformer:
    """A freshly initialised ViT of shape `config`; `choices` defaults to the original (softmax, dense) model."""
    choices = uniform_choices(config.depth) if choices is None else check_choices(config, choices)
    return VisionTransformer(config, choices, moe_latency)
