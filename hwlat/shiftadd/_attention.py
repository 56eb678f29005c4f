"""Attention primitives of a ShiftAdd ViT: softmax, Hamming (binary-code) softmax, binary linear-angular.

All three share the layout of a standard ViT attention (`qkv` and `proj` linears), so a trained softmax
attention converts by copying its weights. Q and K become {-1, +1} codes by sign hashing: the sign of each
coordinate of the (per-head) projection, +1 where >= 0, as `_reference.pack_codes` packs them. This is the
simpler alternative to ShiftAddViT's kernel hashing (KSH trained on a batch): `_reparam` folds a random
orthogonal rotation per head into the Q/K projections, which makes the codes random-hyperplane (SimHash)
codes of the original Q/K, so `q_b . k_b / bits` estimates `1 - 2 * angle / pi` (Charikar 2002) at no
inference cost, and fine-tuning trains the projections through the codes (straight-through sign).
"""

from __future__ import annotations

import torch
from torch import nn


class _SignSTE(torch.autograd.Function):
    """+1 where x >= 0 else -1 forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def binary_codes(x: torch.Tensor) -> torch.Tensor:
    """{-1, +1} codes of `x` (the convention of `_reference.pack_codes`), straight-through gradient."""
    return _SignSTE.apply(x)


class SoftmaxAttention(nn.Module):
    """Multi-head `softmax(Q K^T / sqrt(d)) V` with one `qkv` projection and an output `proj`."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V of `x` [B, N, dim], each [B, heads, N, head_dim]."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Per-head token mixing; [B, heads, N, head_dim] out."""
        weights = torch.softmax(q @ k.transpose(-2, -1) * self.head_dim ** -0.5, dim=-1)
        return weights @ v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mix(*self.split(x))
        return self.proj(out.transpose(1, 2).reshape(x.shape))


class _CodedAttention(SoftmaxAttention):
    """Softmax attention's layout whose Q and K are used only as {-1, +1} codes."""

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """{-1, +1} codes of Q and K, each [B, heads, N, head_dim]."""
        q, k, _ = self.split(x)
        return binary_codes(q), binary_codes(k)


class HammingAttention(_CodedAttention):
    """`softmax(t_h * q_b . k_b) V` with {-1, +1} codes; `q_b . k_b = bits - 2 * popcount(q XOR k)`.

    The scores are exact integers (XOR + popcount on packed codes, see `_reference.hamming_scores_reference`);
    `t_h` is a learned temperature per head, since codes lose the magnitudes the original scores had.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self.temperature = nn.Parameter(torch.full((heads,), self.head_dim ** -0.5))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = binary_codes(q) @ binary_codes(k).transpose(-2, -1)
        return torch.softmax(scores * self.temperature[:, None, None], dim=-1) @ v


class BinaryLinearAttention(_CodedAttention):
    """Linear-angular attention over binary codes: only additions and subtractions touch the token products.

    With `s(q, k) = 1/2 + q_b . k_b / (2 * bits)`, an unbiased estimate of the angular kernel `1 - angle / pi`
    for sign-hash codes, each output is the kernel-weighted mean of the values:
    `out = (0.5 * sum_j v_j + Q_b (K_b^T V) / (2 bits)) / (0.5 N + Q_b (K_b^T 1) / (2 bits))`.
    ShiftAddViT (after Castling-ViT) writes `0.5 V + (1/pi) Q (K^T V)` for real, L2-normalised Q and K,
    the first-order expansion of the same kernel, and then L2-normalises each output; with codes the
    coefficient 1/(2 bits) is the exact one, and dividing by the kernel sum keeps the values' scale, which
    the trained `proj` expects. `K_b^T [V, 1]` and `Q_b (...)` are {-1, +1} matmuls
    (`_reference.sign_matmul_reference`); cost is linear in the number of tokens.
    """

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        bits = q.shape[-1]
        values = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # the last column gives the kernel sum
        context = binary_codes(k).transpose(-2, -1) @ values  # [B, H, bits, d + 1]
        mixed = 0.5 * values.sum(dim=-2, keepdim=True) + binary_codes(q) @ context / (2 * bits)
        return mixed[..., :-1] / mixed[..., -1:].clamp_min(1e-6)


#: Attention kind (see `_config.ATTENTION_KINDS`) -> module class.
ATTENTIONS = {"softmax": SoftmaxAttention, "binary": HammingAttention, "binary-linear": BinaryLinearAttention}
