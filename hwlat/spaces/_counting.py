"""FLOPs and parameter counts measured on a real module, so every space counts the same way."""

from __future__ import annotations

import torch
from torch import nn


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    """Multiply-adds of a convolution: every output element reads k_h*k_w*C_in/groups inputs."""
    kh, kw = module.kernel_size
    return output.numel() * kh * kw * (module.in_channels // module.groups)


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    """Multiply-adds of a fully connected layer: every output element reads in_features inputs."""
    return output.numel() * module.in_features


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on a zero input of `input_shape`, one multiply-add counting once.

    Counts the multiply-adds of every `Conv2d` and `Linear` (the NAS convention, as in NAS-Bench-201's
    figures). Bias additions, BatchNorm, activations, pooling and element-wise sums are not counted. The
    count scales with the batch dimension of `input_shape`; pass batch 1 for the per-image figure.
    """
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output) if isinstance(module, nn.Conv2d) else _linear_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (weights, biases, BatchNorm affine terms; no running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
