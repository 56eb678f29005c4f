"""The FBNet and OFA spaces the predictors encode: canonical strings, validation, sampling, encodings."""

from __future__ import annotations

import numpy as np
import pytest

from hwlat._errors import HwlatError
from hwlat.spaces import FBNetSpace, OFASpace, get_space
from hwlat.spaces.fbnet import OPS

OFA_ARCH = {"ks": [7, 5, 5, 5, 7, 7, 5, 7, 5, 7, 3, 7, 5, 3, 7, 3, 5, 3, 5, 3],
            "e": [6, 4, 4, 6, 6, 3, 4, 3, 3, 6, 3, 3, 3, 6, 3, 4, 6, 4, 3, 6], "d": [2, 2, 2, 2, 3], "r": np.int64(204)}


def test_registered():
    assert isinstance(get_space("fbnet"), FBNetSpace) and isinstance(get_space("ofa"), OFASpace)


def test_fbnet_canonical_encode_and_errors():
    space = FBNetSpace()
    arch = space.from_indices([8] * 21 + [3])
    assert arch == "-".join(["skip"] * 21 + ["k3_e6"]) and space.canonical(f"  {arch} ") == arch
    row = space.encode([arch])[0]
    assert row.shape == (22 * 9,) and row.sum() == 22 and row[21 * 9 + 3] == 1 and row[8] == 1
    for bad, message in ((arch.replace("k3_e6", "k9_e9"), "layer 21 op 'k9_e9' unknown"),
                         ("skip-skip", "2 layer"), (3, "must be a string")):
        with pytest.raises(HwlatError, match=message):
            space.canonical(bad)
    with pytest.raises(HwlatError, match="integers in 0..8"):
        space.from_indices([9] * 22)
    first = space.sample(5, seed=1)
    assert first == space.sample(5, seed=1) and all(space.canonical(a) == a for a in first)
    assert len(OPS) == 9


def test_fbnet_network_counts_match_the_built_module():
    """flops()/params() are per-layer sums; they must equal counting the whole built network."""
    import torch

    from hwlat.spaces._counting import count_flops, count_params

    space = FBNetSpace()
    all_skip = space.from_indices([8] * 22)
    for arch in [all_skip, space.from_indices([7] * 22), *space.sample(3, seed=4)]:
        model = space.build(arch)
        assert count_flops(model, space.input_shape(1)) == space.flops(arch)
        assert count_params(model) == space.params(arch)
    assert space.build(all_skip)(torch.zeros(space.input_shape(2))).shape == (2, 100)
    # a bigger block costs more in every layer; the all-skip net still has its stride/channel-changing 1x1 convs
    assert space.flops(space.from_indices([7] * 22)) > space.flops(space.from_indices([0] * 22)) > space.flops(all_skip)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in space.build(all_skip).modules()) == 2 + 6


def test_ofa_inactive_layers_are_zeroed_and_encoded_as_nothing():
    space = OFASpace()
    arch = space.from_config(OFA_ARCH)
    assert arch.startswith("ks=7,5,0,0,7,7,0,0,") and arch.endswith("d=2,2,2,2,3;r=204")
    changed = dict(OFA_ARCH, ks=[7, 5, 3, 3, *OFA_ARCH["ks"][4:]])  # layers 2, 3 do not exist at depth 2
    assert space.from_config(changed) == arch and space.canonical(arch) == arch
    row = space.encode([arch])[0]
    assert row.shape == (121,) and row[:120].sum() == 2 * 11 and row[6:12].sum() == 0
    assert row[-1] == pytest.approx((204 - 128) / 96) and space.resolution(arch) == 204
    for bad, message in ((arch.replace("r=204", "r=203"), "resolution 203"),
                         (arch.replace("d=2,2,2,2,3", "d=5,2,2,2,3"), "depths"),
                         ("ks=1", "is not of the form")):
        with pytest.raises(HwlatError, match=message):
            space.canonical(bad)
    with pytest.raises(HwlatError, match="layer 0"):
        space.from_config(dict(OFA_ARCH, ks=[4, *OFA_ARCH["ks"][1:]]))
    assert all(space.canonical(a) == a for a in space.sample(5, seed=0))
