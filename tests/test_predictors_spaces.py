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


def _uniform_ofa(kernel: int, expand: int, depth: int, resolution: int) -> str:
    return OFASpace().canonical(f"ks={','.join([str(kernel)] * 20)};e={','.join([str(expand)] * 20)};"
                                f"d={','.join([str(depth)] * 5)};r={resolution}")


def test_ofa_build_runs_at_its_resolution_and_grows_with_every_choice():
    import torch

    space = OFASpace()
    smallest = _uniform_ofa(3, 3, 2, 128)
    model = space.build(smallest)
    assert not model.training and model(torch.zeros(2, 3, 128, 128)).shape == (2, 1000)
    assert space.build(smallest).state_dict()["0.0.weight"].equal(model.state_dict()["0.0.weight"])  # seeded
    blocks = [m for m in model.modules() if type(m).__name__ == "InvertedResidual"]
    assert len(blocks) == 1 + 10 and sum(b.residual for b in blocks) == 1 + 5
    # squeeze-and-excitation in the 40-, 112- and 160-channel stages only: 2 + 2 + 2 layers here
    assert sum(type(m).__name__ == "SqueezeExcite" for m in model.modules()) == 6
    assert sum(isinstance(m, torch.nn.Hardswish) for m in model.modules()) == 1 + 3 * 2 * 2 + 2
    base = space.flops(smallest)
    for bigger in (_uniform_ofa(5, 3, 2, 128), _uniform_ofa(3, 4, 2, 128), _uniform_ofa(3, 3, 3, 128),
                   _uniform_ofa(3, 3, 2, 132)):
        assert space.flops(bigger) > base
    assert space.params(_uniform_ofa(3, 3, 2, 224)) == space.params(smallest)  # resolution adds no weights


def test_ofa_closed_form_counts_equal_counting_the_built_network():
    from hwlat.spaces._counting import count_flops, count_params

    space = OFASpace()
    archs = [_uniform_ofa(7, 6, 4, 224), space.from_config(OFA_ARCH), *space.sample(3, seed=7)]
    flops, params = space.counts(archs)
    for arch, f, p in zip(archs, flops, params):
        model = space.build(arch)
        size = space.resolution(arch)
        assert count_flops(model, (1, 3, size, size)) == f == space.flops(arch)
        assert count_params(model) == p == space.params(arch)
    assert space.counts([])[0].shape == (0,)
    with pytest.raises(HwlatError, match="single string"):
        space.counts(archs[0])


def test_ofa_blocks_rebuild_mobilenetv3_large_with_its_published_size():
    """MobileNetV3-Large from the same blocks (its own per-layer kernels and expansions, torchvision's head with a
    biased 960->1280 linear): torchvision's published 5,483,032 parameters, and ~219 M multiply-adds (paper)."""
    from torch import nn

    from hwlat.spaces._counting import count_flops, count_params
    from hwlat.spaces._ofa_model import InvertedResidual, conv_bn

    # (kernel, expanded channels, output channels, SE, h-swish, stride) after the first block, from the paper
    table = [(3, 64, 24, 0, 0, 2), (3, 72, 24, 0, 0, 1), (5, 72, 40, 1, 0, 2), (5, 120, 40, 1, 0, 1),
             (5, 120, 40, 1, 0, 1), (3, 240, 80, 0, 1, 2), (3, 200, 80, 0, 1, 1), (3, 184, 80, 0, 1, 1),
             (3, 184, 80, 0, 1, 1), (3, 480, 112, 1, 1, 1), (3, 672, 112, 1, 1, 1), (5, 672, 160, 1, 1, 2),
             (5, 960, 160, 1, 1, 1), (5, 960, 160, 1, 1, 1)]
    layers, c_in = [conv_bn(3, 16, 3, 2, hswish=True), InvertedResidual(16, 16, 3, 1, 1, False, False)], 16
    for kernel, hidden, c_out, se, hswish, stride in table:
        layers.append(InvertedResidual(c_in, c_out, kernel, hidden / c_in, stride, bool(hswish), bool(se)))
        c_in = c_out
    net = nn.Sequential(*layers, conv_bn(160, 960, hswish=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(960, 1280), nn.Hardswish(), nn.Linear(1280, 1000))
    assert count_params(net) == 5_483_032
    assert count_flops(net, (1, 3, 224, 224)) == pytest.approx(219e6, rel=0.02)


def test_flops_and_params_proxies_work_on_ofa():
    """The proxy baselines on OFA: latency proportional to FLOPs is recovered exactly from two samples."""
    from hwlat.datasets import LatencyDataset
    from hwlat.predictors import ProxyPredictor

    space = OFASpace()
    archs = space.sample(40, seed=2)
    flops, params = space.counts(archs)
    assert [space.flops(a) for a in archs[:3]] == flops[:3].tolist()
    dataset = LatencyDataset("ofa", archs, {"source": 1e-8 * flops}, [])
    for proxy, values in (("flops", flops), ("params", params)):
        predictor = ProxyPredictor(proxy).fit(dataset).adapt(archs[:2], 2e-8 * values[:2] + 0.5)
        assert np.allclose(predictor.predict(archs[2:]), 2e-8 * values[2:] + 0.5)
