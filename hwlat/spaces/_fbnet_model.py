"""The FBNet CIFAR-100 network of HW-NAS-Bench (the latencies HELP's FBNet data were measured on).

Macro structure as HW-NAS-Bench documents it for CIFAR: a 3x3 stem to 16 channels at stride 1, seven stages
of [1, 4, 4, 4, 4, 4, 1] searchable layers with [16, 24, 32, 64, 112, 184, 352] channels and strides
[1, 1, 2, 2, 1, 2, 1] (the first layer of a stage takes the stride and the channel change), a 1x1 head to
1504 channels, global average pooling and a linear classifier. A block `kK_eE[_gG]` is an inverted
residual: 1x1 (grouped G) expansion by E, channel shuffle when grouped, KxK depthwise, 1x1 (grouped G)
projection, with a residual when shape is kept; `skip` is the identity, or 1x1 conv when shape changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
CIFAR_STRIDES = (1, 1, 2, 2, 1, 2, 1)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504
NUM_CLASSES = 100


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm [-> ReLU]."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    """Interleave the channels of `groups` groups so grouped 1x1 convs see each other's outputs."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """1x1 expand (grouped) -> [shuffle] -> KxK depthwise -> 1x1 project (grouped), residual when shape is kept."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, groups: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.body = nn.Sequential(
            conv_bn(c_in, hidden, groups=groups),
            *([ChannelShuffle(groups)] if groups > 1 else []),
            conv_bn(hidden, hidden, kernel, stride=stride, groups=hidden),
            conv_bn(hidden, c_out, groups=groups, relu=False),
        )
        self.residual = c_in == c_out and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def make_block(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """The block named `op` (e.g. 'k5_e1_g2' or 'skip') from `c_in` to `c_out` channels at `stride`."""
    if op == "skip":
        return nn.Identity() if c_in == c_out and stride == 1 else conv_bn(c_in, c_out, stride=stride)
    parts = op.split("_")
    groups = int(parts[2][1:]) if len(parts) == 3 else 1
    return InvertedResidual(c_in, c_out, int(parts[0][1:]), int(parts[1][1:]), groups, stride)


def layer_shapes() -> list[tuple[int, int, int]]:
    """(input channels, output channels, stride) of each of the 22 searchable layers."""
    shapes, c_in = [], STEM_CHANNELS
    for layers, c_out, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, CIFAR_STRIDES):
        for i in range(layers):
            shapes.append((c_in, c_out, stride if i == 0 else 1))
            c_in = c_out
    return shapes


class FBNet(nn.Sequential):
    """Stem, the 22 chosen blocks, head, pooling and classifier, as one sequential network."""

    def __init__(self, ops: Sequence[str], num_classes: int = NUM_CLASSES) -> None:
        blocks = [make_block(op, *shape) for op, shape in zip(ops, layer_shapes(), strict=True)]
        super().__init__(conv_bn(3, STEM_CHANNELS, 3), *blocks, conv_bn(STAGE_CHANNELS[-1], HEAD_CHANNELS),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(HEAD_CHANNELS, num_classes))
