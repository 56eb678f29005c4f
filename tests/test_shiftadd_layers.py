"""ShiftAdd layers: power-of-two rounding, straight-through gradients, exact integer and binary paths, MoE routing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwlat._errors import HwlatError
from hwlat.shiftadd import _reference as ref
from hwlat.shiftadd._attention import BinaryLinearAttention, HammingAttention, binary_codes
from hwlat.shiftadd._moe import MoEMlp, balance_loss, cv_squared
from hwlat.shiftadd._shift import (SHIFT_RANGE, ShiftLinear, fixed_point_ste, round_ste, shift_linear_int,
                                   to_fixed_point)
from hwlat.shiftadd._vit import Mlp


def _linear_with(weight: list[float]) -> torch.nn.Linear:
    linear = torch.nn.Linear(len(weight), 1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([weight]))
    return linear


def test_rounding_to_powers_of_two_uses_the_log_domain_cut_off():
    # 1.45 * 2**-3 and 1.49 * 2**-3 lie above 2**(-3 + 0.5) = 1.414 * 2**-3, so they round up to 2**-2,
    # though rounding the value (cut-off 1.5 * 2**-3) would keep 2**-3; 1.40 * 2**-3 stays at 2**-3.
    weights = [1.40 / 8, 1.45 / 8, 1.49 / 8, -1.45 / 32, 0.0, 5.0, 1e-9]
    expected = [2 ** -3, 2 ** -2, 2 ** -2, -(2 ** -4), 0.0, 1.0, 2.0 ** SHIFT_RANGE[0]]
    layer = ShiftLinear.from_linear(_linear_with(weights))
    assert layer.weight().detach()[0].tolist() == expected
    sign, shift, _ = layer.export()
    assert sign[0].tolist() == [1, 1, 1, -1, 0, 1, 1]
    assert shift[0].tolist() == [3, 2, 2, 4, 14, 0, 14]


def test_straight_through_estimators_pass_gradients_unchanged():
    x = torch.tensor([0.3, 1.7, -2.2], requires_grad=True)
    (round_ste(x) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0]
    x.grad = None
    fixed_point_ste(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
    x.grad = None
    (binary_codes(x) * 2).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_shift_linear_gradients_follow_deepshift():
    torch.manual_seed(0)
    layer = ShiftLinear.from_linear(torch.nn.Linear(6, 4))
    x = torch.randn(5, 6, requires_grad=True)
    upstream = torch.randn(5, 4)
    (layer(x) * upstream).sum().backward()
    weight = layer.weight().detach()
    x_q = torch.floor(x.detach() * 2 ** 16) / 2 ** 16
    grad_weight = upstream.T @ x_q
    assert torch.allclose(x.grad, upstream @ weight)  # fixed-point input: straight through
    assert torch.allclose(layer.sign.grad, grad_weight)  # sign: the weight's gradient, not scaled by 2**p
    assert torch.allclose(layer.shift.grad, grad_weight * weight * math.log(2))  # d(s * 2**p)/dp
    assert torch.allclose(layer.bias.grad, upstream.sum(0))


def test_integer_path_equals_numpy_reference():
    torch.manual_seed(1)
    layer = ShiftLinear.from_linear(torch.nn.Linear(48, 24))
    x = torch.randn(7, 48) * 3
    sign, shift, bias = layer.export()
    x_int = to_fixed_point(x)
    assert np.array_equal(x_int.numpy(), ref.to_fixed_point(x.numpy()))
    expected = ref.shift_linear_reference(ref.to_fixed_point(x.numpy()), sign.numpy(), shift.numpy())
    assert np.array_equal(shift_linear_int(x_int, sign, shift).numpy(), expected)
    exact = layer.integer_forward(x)
    assert torch.equal(exact, torch.from_numpy((expected + bias.numpy()) / 2 ** 16).float())
    # the float surrogate used in training differs only by the floors of the shifted terms
    assert (layer(x) - exact).abs().max() <= 48 * 2 ** -16


def test_hamming_scores_equal_xor_popcount_reference():
    torch.manual_seed(2)
    attn = HammingAttention(dim=96, heads=2)  # 48-bit codes: one packed word, upper bits padding
    with torch.no_grad():
        q_b, k_b = attn.codes(torch.randn(3, 9, 96))
    assert set(q_b.unique().tolist()) == {-1.0, 1.0}
    scores = (q_b @ k_b.transpose(-2, -1)).to(torch.int64).numpy()
    packed = ref.hamming_scores_reference(ref.pack_codes(q_b.numpy()), ref.pack_codes(k_b.numpy()), bits=48)
    assert np.array_equal(scores, packed)


def test_binary_linear_attention_is_the_kernel_weighted_mean_of_values():
    torch.manual_seed(3)
    attn = BinaryLinearAttention(dim=32, heads=2)
    with torch.no_grad():
        q, k, v = attn.split(torch.randn(2, 11, 32))
    q_b, k_b = binary_codes(q), binary_codes(k)
    kernel = 0.5 + q_b @ k_b.transpose(-2, -1) / (2 * 16)  # quadratic form of the same attention
    assert torch.allclose(attn.mix(q, k, v), kernel @ v / kernel.sum(-1, keepdim=True), atol=1e-5)
    # its token products are sign matmuls (additions only), as the kernels compute them
    context = ref.sign_matmul_reference(k_b[0, 0].T.numpy(), v[0, 0].numpy())
    assert np.allclose(context, (k_b[0, 0].T @ v[0, 0]).numpy(), atol=1e-5)


def _moe(latency, dim=8, seed=0) -> MoEMlp:
    torch.manual_seed(seed)
    return MoEMlp([Mlp(dim, 16), Mlp(dim, 16, shift=True)], dim, latency)


def test_moe_output_is_the_chosen_experts_and_the_router_learns_from_the_task():
    moe = _moe((6.0, 4.0))
    x = torch.randn(64, 8) + torch.randn(8)
    moe.eval()
    out = moe(x)
    choice = moe.router(x).argmax(-1)
    for index, expert in enumerate(moe.experts):
        assert torch.allclose(out[choice == index], expert(x[choice == index]), atol=1e-6)
    assert 0 < int((choice == 1).sum()) < len(x)
    moe.train()
    moe(x).pow(2).sum().backward()  # task loss only
    assert moe.router.weight.grad.abs().sum() > 0  # a constant top-1 gate would give none


def test_balance_loss_is_zero_when_latency_times_tokens_is_equal():
    probs = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 6)
    assert float(balance_loss(probs, probs, torch.tensor([6.0, 4.0]))) == pytest.approx(0.0, abs=1e-9)
    assert float(balance_loss(probs, probs, torch.tensor([1.0, 1.0]))) > 0
    assert float(cv_squared(torch.tensor([2.0, 2.0, 2.0]))) == 0.0
    with pytest.raises(HwlatError, match="2 experts but 3 latencies"):
        _moe((1.0, 2.0, 3.0))


def _trained_shift_share(latency) -> tuple[float, float]:
    """Train only the router on the balance loss; share of tokens to shift while training and at evaluation."""
    moe = _moe(latency)
    optimizer = torch.optim.Adam([*moe.router.parameters(), *moe.noise.parameters()], lr=2e-2)
    generator = torch.Generator().manual_seed(1)
    centre = torch.randn(8, generator=generator)  # tokens with a common offset, as after a LayerNorm's bias
    moe.train()
    for step in range(150):
        if step == 100:
            moe.reset_counts()
        moe(centre + torch.randn(128, 8, generator=generator))
        optimizer.zero_grad()
        moe.balance_loss.backward()
        optimizer.step()
    during = float(moe.fractions()[1])
    moe.eval()
    moe.reset_counts()
    with torch.no_grad():
        moe(centre + torch.randn(2048, 8, generator=generator))
    return during, float(moe.fractions()[1])


def test_router_balance_follows_expert_latency():
    slow_mult_during, slow_mult_eval = _trained_shift_share((6.0, 4.0))
    slow_shift_during, slow_shift_eval = _trained_shift_share((4.0, 6.0))
    # training-time routing approaches the loss's optimum: tokens in inverse proportion to latency
    assert slow_mult_during == pytest.approx(0.6, abs=0.06)
    assert slow_shift_during == pytest.approx(0.4, abs=0.06)
    # the deployed (clean arg-max) routing moves the same way when the latency vector changes
    assert slow_mult_eval > 0.5 > slow_shift_eval
