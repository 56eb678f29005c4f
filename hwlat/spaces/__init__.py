"""Search spaces: architectures named by canonical strings, buildable as real networks."""

from __future__ import annotations

from hwlat._errors import HwlatError
from hwlat.spaces._base import BaseSpace
from hwlat.spaces.fbnet import FBNetSpace
from hwlat.spaces.hybrid_lm import HybridLMSpace
from hwlat.spaces.nasbench201 import NasBench201Space
from hwlat.spaces.ofa import OFASpace
from hwlat.spaces.shiftadd import ShiftAddSpace

_SPACES: dict[str, type[BaseSpace]] = {"nb201": NasBench201Space, "fbnet": FBNetSpace, "ofa": OFASpace,
                                    "hybrid-lm": HybridLMSpace, "shiftadd": ShiftAddSpace}
_ALIASES: dict[str, str] = {"nasbench201": "nb201"}

#: canonical space names (each equals its space's `name`); `get_space` also accepts aliases
SPACES: tuple[str, ...] = tuple(_SPACES)


def get_space(name: str) -> BaseSpace:
    """The search space called `name` (e.g. "nb201" or alias "nasbench201"); HwlatError lists the known names."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in _SPACES:
        known = ", ".join(sorted([*_SPACES, *_ALIASES]))
        raise HwlatError(f"unknown search space {name!r} (known: {known})")
    return _SPACES[key]()


__all__ = ["SPACES", "BaseSpace", "FBNetSpace", "HybridLMSpace", "NasBench201Space", "OFASpace", "ShiftAddSpace", "get_space"]
