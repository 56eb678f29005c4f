"""ShiftAdd ViT: building per-block choices, reparameterizing a trained model, fine-tuning, caching, energy."""

from __future__ import annotations

import pytest
import torch

import hwlat.shiftadd._train as training
from hwlat._errors import HwlatError
from hwlat.shiftadd._attention import BinaryLinearAttention, HammingAttention
from hwlat.shiftadd._config import ATTENTION_KINDS, MLP_KINDS, VIT_TINY, BlockChoice, ViTConfig, uniform_choices
from hwlat.shiftadd._energy import PAPER_SHIFT_FRACTION, attention_ops, estimate_energy, mlp_ops
from hwlat.shiftadd._moe import MoEMlp
from hwlat.shiftadd._reparam import reparameterize
from hwlat.shiftadd._shift import ShiftLinear
from hwlat.shiftadd._vit import build_vit

#: A two-block digits ViT that trains in a few seconds (to about 75 % validation accuracy).
SMALL = ViTConfig(image_size=8, patch_size=2, channels=1, dim=32, depth=2, heads=2, mlp_ratio=2, num_classes=10)
QUICK = training.Budget(epochs=10, warmup_epochs=1, lr=3e-3)


@pytest.fixture(scope="module")
def base():
    """SMALL trained briefly (not cached: the module-scoped fixture runs before the per-test home is set)."""
    return training.trained_base(SMALL, seed=0, budget=QUICK, use_cache=False)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@pytest.mark.parametrize("mlp", MLP_KINDS)
def test_every_block_choice_builds_and_runs(attention, mlp):
    model = build_vit(SMALL, uniform_choices(SMALL.depth, attention, mlp))
    out = model(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert model.choices == (BlockChoice(attention, mlp),) * SMALL.depth


def test_bad_choices_are_one_line_errors():
    with pytest.raises(HwlatError, match="need 2 BlockChoice values"):
        build_vit(SMALL, uniform_choices(3))
    with pytest.raises(HwlatError, match="unknown attention 'linear'"):
        BlockChoice("linear")
    with pytest.raises(HwlatError, match="unknown split"):
        training.evaluate(build_vit(SMALL), "holdout")


@pytest.mark.slow
def test_base_trains_above_chance(base):
    assert training.evaluate(base, "val") > 0.5


def test_shift_reparameterization_stays_close_before_fine_tuning(base):
    images = training.digits_split()["val"][0]
    shifted = reparameterize(base, uniform_choices(SMALL.depth, mlp="shift"))
    with torch.no_grad():
        original, converted = base(images), shifted(images)
    assert (converted - original).norm() / original.norm() < 0.1
    assert (converted.argmax(-1) == original.argmax(-1)).double().mean() > 0.95
    assert abs(training.evaluate(shifted, "val") - training.evaluate(base, "val")) < 0.03


def test_reparameterization_reuses_the_trained_weights(base):
    choices = (BlockChoice("binary", "moe"), BlockChoice("binary-linear", "shift"))
    before = {name: value.clone() for name, value in base.state_dict().items()}
    model = reparameterize(base, choices, calibration=training.digits_split()["train"][0][:64])
    assert all(torch.equal(value, before[name]) for name, value in base.state_dict().items())  # a copy
    assert model.choices == choices and base.choices == uniform_choices(SMALL.depth)
    first, second = model.blocks
    assert isinstance(first.attn, HammingAttention) and isinstance(second.attn, BinaryLinearAttention)
    dense, shift = first.mlp.experts
    assert isinstance(first.mlp, MoEMlp) and torch.equal(dense.fc1.weight, base.blocks[0].mlp.fc1.weight)
    assert torch.equal(shift.fc1.weight(), ShiftLinear.from_linear(base.blocks[0].mlp.fc1).weight())
    assert isinstance(second.mlp.fc2, ShiftLinear)
    # the hashing rotation is folded into Q and K: scores q . k and the V / proj weights are unchanged
    x = torch.randn(2, SMALL.tokens, SMALL.dim)
    with torch.no_grad():
        for old, new in ((base.blocks[0].attn, first.attn), (base.blocks[1].attn, second.attn)):
            (q0, k0, v0), (q1, k1, v1) = old.split(x), new.split(x)
            assert torch.allclose(q0 @ k0.transpose(-2, -1), q1 @ k1.transpose(-2, -1), atol=1e-4)
            assert not torch.allclose(q0, q1) and torch.equal(v0, v1)
            assert torch.equal(old.proj.weight, new.proj.weight)
    assert (first.attn.temperature > 0).all()


def test_converting_back_is_refused(base):
    shifted = reparameterize(base, uniform_choices(SMALL.depth, "binary", "shift"))
    with pytest.raises(HwlatError, match="only a dense MLP can become 'moe'"):
        reparameterize(shifted, uniform_choices(SMALL.depth, "binary", "moe"))
    with pytest.raises(HwlatError, match="cannot be converted back to softmax"):
        reparameterize(shifted, uniform_choices(SMALL.depth, "softmax", "shift"))


@pytest.mark.slow
def test_finetuned_accuracy_is_deterministic(base):
    choices = (BlockChoice("binary", "moe"), BlockChoice("softmax", "shift"))
    first = training.finetuned_accuracy(choices, base, epochs=1, seed=3)
    assert first == training.finetuned_accuracy(choices, base, epochs=1, seed=3)
    assert 0.0 <= first <= 1.0


def test_trained_base_is_cached_under_the_hwlat_home(monkeypatch):
    budget = training.Budget(epochs=1, warmup_epochs=1)
    trained = training.trained_base(SMALL, seed=1, budget=budget)
    assert training.base_cache_path(SMALL, 1, budget).exists()
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("retrained despite the cache"))
    loaded = training.trained_base(SMALL, seed=1, budget=budget)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))
    assert training.base_cache_path(SMALL, 2, budget) != training.base_cache_path(SMALL, 1, budget)


def test_energy_counts_and_savings():
    n, dim, hidden = VIT_TINY.tokens, VIT_TINY.dim, VIT_TINY.hidden
    dense, shift = mlp_ops(VIT_TINY, "dense"), mlp_ops(VIT_TINY, "shift")
    assert dense["fp32_mult"] == n * 2 * dim * hidden and shift["int32_shift"] == n * 2 * dim * hidden
    assert attention_ops(VIT_TINY, "binary-linear")["exp"] == 0 < attention_ops(VIT_TINY, "binary")["exp"]
    original = estimate_energy(VIT_TINY, uniform_choices(12))
    all_shift = estimate_energy(VIT_TINY, uniform_choices(12, mlp="shift"))
    assert all_shift.ops["int32_shift"] == 12 * n * 2 * dim * hidden
    assert 0 < all_shift.saving(original) < 1
    assert estimate_energy(VIT_TINY, uniform_choices(12, "binary-linear")).total_uj < original.total_uj
    moe = [estimate_energy(VIT_TINY, uniform_choices(12, mlp="moe"), f).total_uj for f in (0.0, 0.6, 1.0)]
    assert moe[0] > moe[1] > moe[2] > all_shift.total_uj and moe[0] > original.total_uj  # the router costs
    per_block = estimate_energy(VIT_TINY, uniform_choices(12, mlp="moe"), [PAPER_SHIFT_FRACTION] * 12)
    assert per_block.total_uj == pytest.approx(moe[1])
    with pytest.raises(HwlatError, match="need 12 block choices"):
        estimate_energy(VIT_TINY, uniform_choices(11))
    with pytest.raises(HwlatError, match="not in"):
        estimate_energy(VIT_TINY, uniform_choices(12, mlp="moe"), 1.5)
