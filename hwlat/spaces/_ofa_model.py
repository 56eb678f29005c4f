"""Once-for-All MobileNetV3-Large subnets (the networks HELP's OFA latencies were measured on), and their counts.

Macro structure as the OFA paper (Cai et al., ICLR 2020) takes it from MobileNetV3-Large (Howard et al., ICCV
2019): a 3x3 stride-2 stem to 16 channels (h-swish); a fixed first block (3x3 depthwise, 1x1 projection, ReLU,
residual); five stages of 2-4 searchable layers with [24, 40, 80, 112, 160] channels and strides
[2, 2, 2, 1, 2], ReLU in the first two stages and h-swish after, squeeze-and-excitation in the 40-, 112- and
160-channel stages (the first layer of a stage takes the stride and the channel change, later ones are
residual); a 1x1 conv to 960 channels (h-swish), global average pooling, a 1x1 conv to 1280 without BatchNorm
(h-swish) and a linear classifier over 1000 ImageNet classes (training dropout, an identity here, is left out).
A layer of kernel K and expand ratio E is an inverted residual: 1x1 expansion to `divisible(C_in * E)` channels,
KxK depthwise conv, [SE: pool, 1x1 to `divisible(channels / 4)` with bias, ReLU, 1x1 back with bias,
h-sigmoid, scale], 1x1 linear projection; every conv but the SE's and the 1280 one is followed by BatchNorm.

`counts` gives the FLOPs (multiply-adds of every conv and linear layer, as `_counting.count_flops`) and the
parameters (as `_counting.count_params`) of many subnets at once, in closed form.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

STEM_CHANNELS = 16
#: output channels, first stride, activation and squeeze-and-excitation of the five searchable stages
STAGE_CHANNELS = (24, 40, 80, 112, 160)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_HSWISH = (False, False, True, True, True)
STAGE_SE = (False, True, False, True, True)
MAX_DEPTH = 4
HEAD_CHANNELS = (960, 1280)
NUM_CLASSES = 1000
#: channel counts are rounded to multiples of this (MobileNet's `make_divisible`)
DIVISOR = 8
SE_REDUCTION = 4


def divisible(value, divisor: int = DIVISOR):
    """`value` rounded to the nearest multiple of `divisor` (at least `divisor`), rounded up when that loses
    more than 10 %: MobileNet's channel rule. Works element-wise on integer arrays too."""
    rounded = np.maximum(divisor, (np.asarray(value) + divisor // 2) // divisor * divisor)
    out = rounded + divisor * (rounded < 0.9 * np.asarray(value))
    return int(out) if np.ndim(out) == 0 else out


def _act(hswish: bool) -> nn.Module:
    return nn.Hardswish(inplace=True) if hswish else nn.ReLU(inplace=True)


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1,
            hswish: bool | None = None) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm [-> h-swish if `hswish`, ReLU if False, nothing if None]."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([] if hswish is None else [_act(hswish)]))


class SqueezeExcite(nn.Module):
    """Channel attention: scale each channel by h-sigmoid of a two-layer bottleneck on its global mean."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = divisible(channels // SE_REDUCTION)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Hardsigmoid(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """[1x1 expand] -> KxK depthwise [-> SE] -> 1x1 linear projection, residual when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int, hswish: bool,
                 se: bool) -> None:
        super().__init__()
        hidden = divisible(round(c_in * expand)) if expand != 1 else c_in
        self.body = nn.Sequential(
            *([conv_bn(c_in, hidden, hswish=hswish)] if expand != 1 else []),
            conv_bn(hidden, hidden, kernel, stride=stride, groups=hidden, hswish=hswish),
            *([SqueezeExcite(hidden)] if se else []),
            conv_bn(hidden, c_out),
        )
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def layer_shapes() -> list[tuple[int, int, int, bool, bool]]:
    """(input channels, output channels, stride, h-swish, SE) of each of the 20 layer positions."""
    shapes, c_in = [], STEM_CHANNELS
    for c_out, stride, hswish, se in zip(STAGE_CHANNELS, STAGE_STRIDES, STAGE_HSWISH, STAGE_SE):
        for i in range(MAX_DEPTH):
            shapes.append((c_in, c_out, stride if i == 0 else 1, hswish, se))
            c_in = c_out
    return shapes


class OFAMobileNetV3(nn.Sequential):
    """Stem, first block, the active layers (kernel `ks[i]`, expand `e[i]`; the first `d[s]` of stage s),
    head, pooling and classifier, as one sequential network. Any input resolution works."""

    def __init__(self, ks: Sequence[int], e: Sequence[int], d: Sequence[int], num_classes: int = NUM_CLASSES) -> None:
        shapes = layer_shapes()
        layers = [InvertedResidual(c_in, c_out, ks[i], e[i], stride, hswish, se)
                  for i, (c_in, c_out, stride, hswish, se) in enumerate(shapes) if i % MAX_DEPTH < d[i // MAX_DEPTH]]
        super().__init__(
            conv_bn(3, STEM_CHANNELS, 3, stride=2, hswish=True),
            InvertedResidual(STEM_CHANNELS, STEM_CHANNELS, 3, 1, 1, hswish=False, se=False),
            *layers,
            conv_bn(STAGE_CHANNELS[-1], HEAD_CHANNELS[0], hswish=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(HEAD_CHANNELS[0], HEAD_CHANNELS[1], 1, bias=False), nn.Hardswish(inplace=True),
            nn.Flatten(), nn.Linear(HEAD_CHANNELS[1], num_classes))


def _downsampled(size: np.ndarray, stride: int) -> np.ndarray:
    """Spatial size after a 'same'-padded odd-kernel conv of `stride`: ceil(size / stride)."""
    return -(-size // stride)


def counts(ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, params) of N subnets from arrays ks, e (N, 20), d (N, 5) and r (N,), as int64 arrays.

    FLOPs are multiply-adds at batch 1 of every conv and linear layer (SE included; BatchNorm, activations,
    pooling and residual sums not counted), equal to `count_flops(OFAMobileNetV3(..), (1, 3, r, r))`; params
    equal `count_params` of the same network (BatchNorm affine terms included).
    """
    ks, e = np.asarray(ks, dtype=np.int64), np.asarray(e, dtype=np.int64)
    d, size = np.asarray(d, dtype=np.int64), np.asarray(r, dtype=np.int64)
    size = _downsampled(size, 2)  # after the stem
    s = STEM_CHANNELS
    flops = size ** 2 * (3 * 9 * s + 9 * s + s * s)  # stem, first block's depthwise and projection
    params = np.full_like(size, 3 * 9 * s + 2 * s + (9 * s + 2 * s) + (s * s + 2 * s))
    for i, (c_in, c_out, stride, _, se) in enumerate(layer_shapes()):
        active = i % MAX_DEPTH < d[:, i // MAX_DEPTH]
        out_size = _downsampled(size, stride)
        hidden = divisible(c_in * e[:, i])
        kernel = ks[:, i] ** 2
        layer_flops = size ** 2 * c_in * hidden + out_size ** 2 * hidden * (kernel + c_out)
        layer_params = hidden * (c_in + kernel + c_out + 4) + 2 * c_out
        if se:
            se_hidden = divisible(hidden // SE_REDUCTION)
            layer_flops = layer_flops + 2 * hidden * se_hidden
            layer_params = layer_params + 2 * hidden * se_hidden + se_hidden + hidden
        flops = flops + np.where(active, layer_flops, 0)
        params = params + np.where(active, layer_params, 0)
        if stride > 1:  # the stage's first layer always exists
            size = out_size
    c, (h1, h2) = STAGE_CHANNELS[-1], HEAD_CHANNELS
    flops = flops + size ** 2 * c * h1 + h1 * h2 + h2 * NUM_CLASSES
    params = params + c * h1 + 2 * h1 + h1 * h2 + h2 * NUM_CLASSES + NUM_CLASSES
    return flops, params
