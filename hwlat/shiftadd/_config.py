"""What a ShiftAdd ViT is made of: its shape and, per block, the primitive chosen for attention and MLP.

The PyTorch model (`_vit.py`), the TVM latency model and the energy estimate all read these, so a choice
made by the search means the same network everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwlat._errors import HwlatError

#: Attention primitives: standard softmax(QK^T)V; Hamming scores of {-1,+1} Q/K codes (XOR + popcount)
#: followed by softmax; and the linear-angular form 0.5 V + (1/pi) Q_b (K_b^T V) over binary codes (additions).
ATTENTION_KINDS = ("softmax", "binary", "binary-linear")
#: MLP primitives: dense fp32 linears, shift linears (weights sign * 2^p), and a top-1 mixture of {dense, shift}.
MLP_KINDS = ("dense", "shift", "moe")


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a ViT (patch embedding, `depth` pre-norm blocks, class token head)."""

    image_size: int
    patch_size: int
    channels: int
    dim: int
    depth: int
    heads: int
    mlp_ratio: int
    num_classes: int

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise HwlatError(f"vit: image size {self.image_size} is not a multiple of patch size {self.patch_size}")
        if self.dim % self.heads:
            raise HwlatError(f"vit: dim {self.dim} is not a multiple of heads {self.heads}")

    @property
    def tokens(self) -> int:
        """Patches plus the class token (197 for DeiT-Tiny)."""
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def hidden(self) -> int:
        return self.dim * self.mlp_ratio


#: DeiT-Tiny's shape, used for latency and energy: 224x224 RGB, 16x16 patches (197 tokens), dim 192, 12 blocks.
VIT_TINY = ViTConfig(image_size=224, patch_size=16, channels=3, dim=192, depth=12, heads=3, mlp_ratio=4,
                     num_classes=1000)
#: A small ViT that trains here in minutes on scikit-learn's 8x8 digits (17 tokens), used for accuracy. It has
#: DeiT-Tiny's depth, so a per-block choice means the same block in both.
VIT_DIGITS = ViTConfig(image_size=8, patch_size=2, channels=1, dim=64, depth=12, heads=2, mlp_ratio=4, num_classes=10)
MODELS = {"vit-tiny": VIT_TINY, "vit-digits": VIT_DIGITS}


@dataclass(frozen=True)
class BlockChoice:
    """The primitives of one transformer block."""

    attention: str = "softmax"
    mlp: str = "dense"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise HwlatError(f"shiftadd: unknown attention {self.attention!r} (choose from {', '.join(ATTENTION_KINDS)})")
        if self.mlp not in MLP_KINDS:
            raise HwlatError(f"shiftadd: unknown mlp {self.mlp!r} (choose from {', '.join(MLP_KINDS)})")


def uniform_choices(depth: int, attention: str = "softmax", mlp: str = "dense") -> tuple[BlockChoice, ...]:
    """The same choice in every block (`uniform_choices(12)` is the original model)."""
    return (BlockChoice(attention, mlp),) * depth


def get_model_config(name: str) -> ViTConfig:
    """A named ViT shape; a one-line error lists the known names."""
    if name not in MODELS:
        raise HwlatError(f"shiftadd: unknown model {name!r} (choose from {', '.join(MODELS)})")
    return MODELS[name]
