"""Convert the blocks of a trained ViT to ShiftAdd primitives, keeping the trained weights.

- MLP dense -> shift: every `nn.Linear` becomes `ShiftLinear.from_linear` (sign and log-domain exponent).
- MLP dense -> moe: experts [the trained MLP, its shift copy] under a fresh router.
- attention softmax -> binary / binary-linear: the trained `qkv` and `proj` are reused; per head, a random
  orthogonal rotation R is folded into the Q and K rows (`W_q <- R^T W_q`, same R for K), which leaves
  `q . k` unchanged and makes the sign codes random-hyperplane hashes of the original Q/K. Hamming
  attention's temperatures are fitted so its logits best match the trained softmax logits on a
  calibration batch (least squares on row-centred logits; softmax ignores a per-row offset).
Converting back (shift -> dense, binary -> softmax) is not possible: start again from the trained model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from hwlat._errors import HwlatError
from hwlat.shiftadd._attention import ATTENTIONS, HammingAttention, SoftmaxAttention
from hwlat.shiftadd._config import BlockChoice
from hwlat.shiftadd._moe import PAPER_LATENCY, MoEMlp
from hwlat.shiftadd._shift import ShiftLinear
from hwlat.shiftadd._vit import Mlp, VisionTransformer, check_choices


def shift_mlp(mlp: Mlp) -> Mlp:
    """A shift copy of a dense MLP (the dense one is left untouched)."""
    shifted = copy.deepcopy(mlp)
    shifted.fc1, shifted.fc2 = ShiftLinear.from_linear(mlp.fc1), ShiftLinear.from_linear(mlp.fc2)
    return shifted


def _rotate_qk(attn: SoftmaxAttention) -> None:
    """Fold one random orthogonal matrix per head into the Q and K rows of `attn.qkv`, in place."""
    dim, d = attn.proj.in_features, attn.head_dim
    with torch.no_grad():
        for head in range(attn.heads):
            rotation, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
            for offset in (0, dim):  # Q rows, then K rows
                rows = slice(offset + head * d, offset + (head + 1) * d)
                weight, bias = attn.qkv.weight[rows].double(), attn.qkv.bias[rows].double()
                attn.qkv.weight[rows] = (rotation.T @ weight).float()
                attn.qkv.bias[rows] = (rotation.T @ bias).float()


def _fit_temperature(attn: HammingAttention, original: SoftmaxAttention, x: torch.Tensor) -> None:
    """Per-head temperature minimising the squared error between centred binary and trained logits."""
    with torch.no_grad():
        q, k, _ = original.split(x)
        target = q @ k.transpose(-2, -1) * original.head_dim ** -0.5
        q_b, k_b = attn.codes(x)
        scores = q_b @ k_b.transpose(-2, -1)
        target = target - target.mean(-1, keepdim=True)
        scores = scores - scores.mean(-1, keepdim=True)
        fitted = (target * scores).sum((0, 2, 3)) / (scores ** 2).sum((0, 2, 3)).clamp_min(1e-12)
        attn.temperature.copy_(fitted.clamp_min(1e-4))


def convert_attention(attn: SoftmaxAttention, kind: str, calibration: torch.Tensor | None = None) -> SoftmaxAttention:
    """`attn` (softmax, or binary for a switch between binary kinds) as attention of `kind`.

    The hashing rotations come from torch's global random generator (`reparameterize` seeds it).
    """
    if kind == "softmax":
        raise HwlatError("shiftadd: binary attention cannot be converted back to softmax; start from the trained model")
    converted = ATTENTIONS[kind](attn.proj.in_features, attn.heads)
    converted.load_state_dict(attn.state_dict(), strict=False)
    if type(attn) is SoftmaxAttention:
        _rotate_qk(converted)
        if isinstance(converted, HammingAttention) and calibration is not None:
            _fit_temperature(converted, attn, calibration)
    return converted


def convert_mlp(mlp: nn.Module, kind: str, moe_latency: Sequence[float] = PAPER_LATENCY) -> nn.Module:
    """A dense `Mlp` as an MLP of `kind`: its shift copy, or an MoE of [itself, its shift copy]."""
    if not isinstance(mlp, Mlp) or isinstance(mlp.fc1, ShiftLinear):
        raise HwlatError(f"shiftadd: only a dense MLP can become {kind!r}; start from the trained model")
    if kind == "shift":
        return shift_mlp(mlp)
    return MoEMlp([mlp, shift_mlp(mlp)], mlp.fc1.in_features, moe_latency)


def _block_inputs(model: VisionTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """The input of every block's attention (after `norm1`) for `images`, from the model as it is."""
    captured: list[torch.Tensor] = []
    handles = [block.norm1.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
               for block in model.blocks]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return captured


def reparameterize(model: VisionTransformer, choices: Sequence[BlockChoice], *, inplace: bool = False,
                   calibration: torch.Tensor | None = None, moe_latency: Sequence[float] = PAPER_LATENCY,
                   seed: int = 0) -> VisionTransformer:
    """`model` with each block converted to `choices` (blocks already of the chosen kind are kept).

    Works on a copy unless `inplace`. `calibration` (a batch of input images) fits Hamming attention's
    temperatures to the trained logits; `seed` fixes the hashing rotations and the MoE routers' init.
    """
    choices = check_choices(model.config, choices)
    model = model if inplace else copy.deepcopy(model)
    needs_inputs = calibration is not None and any(c.attention == "binary" for c in choices)
    inputs = _block_inputs(model, calibration) if needs_inputs else [None] * len(choices)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for block, old, new, x in zip(model.blocks, model.choices, choices, inputs):
            if new.attention != old.attention:
                block.attn = convert_attention(block.attn, new.attention, x)
            if new.mlp != old.mlp:
                block.mlp = convert_mlp(block.mlp, new.mlp, moe_latency)
    model.choices = choices
    return model
