"""The extension point for search spaces: every space names its architectures by canonical strings."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence

import numpy as np


class BaseSpace(abc.ABC):
    """A set of architectures, each identified by a canonical string.

    Architectures cross process and storage boundaries as strings, so every method takes and returns
    canonical strings; `canonical()` turns any accepted spelling into that string or raises `HwlatError`.
    """

    #: short name used on the command line and in stored records, e.g. ``"nb201"``
    name: str

    @abc.abstractmethod
    def canonical(self, arch: str) -> str:
        """Validate `arch` and return its canonical string; raise HwlatError naming what is wrong."""

    @abc.abstractmethod
    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """Draw `n` distinct architectures uniformly at random (reproducible for a given seed)."""

    def choices(self) -> dict[str, tuple[str, ...]]:
        """The space as named categorical decisions (name -> options), the parameters samplers choose."""
        raise NotImplementedError(f"space {self.name!r} has no categorical decisions")

    def from_choices(self, chosen: Mapping[str, str]) -> str:
        """Canonical arch taking one option per decision of `choices()`; HwlatError if the mix is invalid."""
        raise NotImplementedError(f"space {self.name!r} has no categorical decisions")

    def to_choices(self, arch: str) -> dict[str, str]:
        """The option `arch` takes for each decision of `choices()` (inverse of `from_choices`)."""
        raise NotImplementedError(f"space {self.name!r} has no categorical decisions")

    def enumerate(self) -> Iterator[str]:
        """Every architecture of a finite space, in the space's official order."""
        raise NotImplementedError(f"space {self.name!r} is not enumerable")

    def __len__(self) -> int:
        raise NotImplementedError(f"space {self.name!r} has no finite size")

    @abc.abstractmethod
    def encode(self, archs: Sequence[str], kind: str = "onehot") -> np.ndarray:
        """Numeric features for predictors, one row per architecture."""

    @abc.abstractmethod
    def build(self, arch: str):  # -> torch.nn.Module (torch imported lazily)
        """The real network of `arch` as a `torch.nn.Module` in eval mode."""

    @abc.abstractmethod
    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """Shape of the input tensor `build(arch)` expects."""

    @abc.abstractmethod
    def flops(self, arch: str) -> int:
        """FLOPs of one forward pass at batch 1 in the NAS convention: a multiply-add counts once.

        This is the convention of NAS-Bench-201's API and most NAS papers, so figures compare directly.
        """

    @abc.abstractmethod
    def params(self, arch: str) -> int:
        """Number of trainable parameters of `build(arch)`."""
