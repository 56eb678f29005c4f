"""The NAS-Bench-201 CIFAR network (TinyNetwork of the official code) as plain torch modules."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias, 'same' padding) -> BatchNorm: the conv op of cells and reduction blocks."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The `none` op: multiplies by zero (as the official code does) so the graph keeps its shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(op: str, channels: int) -> nn.Module:
    """One cell-edge operation at stride 1 with `channels` in and out."""
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {op!r}")


class Cell(nn.Module):
    """A 4-node DAG cell: node j is the sum of op_{j<-i}(node i) over i < j; node 3 is the output."""

    def __init__(self, ops: Sequence[str], edges: Sequence[tuple[int, int]], channels: int) -> None:
        super().__init__()
        self.edges = tuple(edges)
        self.layers = nn.ModuleList(make_op(op, channels) for op in ops)
        self.num_nodes = 1 + max(dst for dst, _ in self.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in range(1, self.num_nodes):
            terms = [layer(nodes[src]) for layer, (to, src) in zip(self.layers, self.edges) if to == dst]
            nodes.append(functools.reduce(operator.add, terms))
        return nodes[-1]


class ResNetReduction(nn.Module):
    """The residual block between stages: halves the resolution and changes the width."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    """Stem, 3 stages of `cells_per_stage` cells (widths C, 2C, 4C) with reductions between, then a classifier."""

    def __init__(
        self,
        ops: Sequence[str],
        edges: Sequence[tuple[int, int]],
        channels: int = 16,
        cells_per_stage: int = 5,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        blocks: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                blocks.append(ResNetReduction(width, width * 2))
                width *= 2
            blocks.extend(Cell(ops, edges, width) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(x), 1))
