"""A CIFAR ResNet-18/34 (basic blocks, 3x3 stem at stride 1): a larger CNN than NB201 cells to split."""

from __future__ import annotations

from torch import nn

#: basic blocks per stage for each depth
DEPTHS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def cifar_resnet(depth: int, classes: int = 100, width: int = 64) -> nn.Module:
    """ResNet-`depth` for 3x32x32 inputs in eval mode, seeded weights (latency does not depend on their values)."""
    import torch

    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c_in = width
    for stage, blocks in enumerate(DEPTHS[depth]):
        c_out = width * 2 ** stage
        for block in range(blocks):
            layers.append(BasicBlock(c_in, c_out, 2 if stage and not block else 1))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers).eval()
