"""The hybrid-lm space: decode equals full-sequence logits per operator, validity rules, round trips, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hwlat
from hwlat._errors import HwlatError
from hwlat.spaces import get_space
from hwlat.spaces._lm_blocks import CHUNK, delta_rule_chunked, delta_rule_step
from hwlat.spaces._lm_train import Budget, stdlib_corpus, trained_loss, validation_windows, zero_cost_proxies
from hwlat.spaces.hybrid_lm import MAX_LAYERS, OPS, WINDOW

SPACE = get_space("hybrid-lm")
#: longer than a chunk and than the sliding window, and not a multiple of either
LENGTH = 2 * CHUNK + 7


def _stressed(arch: str) -> torch.nn.Module:
    """The built model in float64 with its weights perturbed, so gates and decays are far from their init."""
    model = SPACE.build(arch).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


@pytest.mark.parametrize("op", [op for op in OPS if op != "ffn"] + ["ffn"])
def test_decode_path_gives_the_full_sequence_logits(op):
    arch = f"w64-h2-f2:{op}" if op != "ffn" else "w64-h2-f3:gdn,ffn"
    model = _stressed(arch)
    tokens = torch.randint(0, 256, (2, LENGTH), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(tokens)
        split = CHUNK + 3  # a chunked prefill with a state carried in, then one token at a time
        logits, cache = model.prefill(tokens[:, :10])
        pieces = [logits]
        logits, cache = model.prefill(tokens[:, 10:split], cache)
        pieces.append(logits)
        for t in range(split, LENGTH):
            logits, cache = model.step(tokens[:, t], cache)
            pieces.append(logits[:, None])
        stepped = torch.cat(pieces, dim=1)
        last, _ = model.prefill(tokens, last_only=True)
    torch.testing.assert_close(stepped, full, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-9, atol=1e-9)


def test_decoding_leaves_the_cache_unchanged_so_a_context_can_be_reused():
    model = _stressed("w64-h2-f2:attn,swa,gdn,mamba,ffn")
    tokens = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _, cache = model.prefill(tokens)
        first, _ = model.step(tokens[:, 0], cache)
        again, _ = model.step(tokens[:, 0], cache)
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_sliding_window_cache_is_bounded_and_full_attention_cache_grows():
    model = SPACE.build("w64-h2-f2:attn,swa")
    with torch.no_grad():
        _, cache = model.prefill(torch.zeros(1, 3 * WINDOW, dtype=torch.long))
    assert cache[0]["k"].shape[2] == 3 * WINDOW and cache[1]["k"].shape[2] == WINDOW


def test_chunked_delta_rule_matches_the_recurrence_with_strong_gates():
    generator = torch.Generator().manual_seed(3)
    shape = (2, 3, LENGTH)
    q, k = (torch.nn.functional.normalize(torch.randn(*shape, 8, generator=generator, dtype=torch.float64), dim=-1)
            for _ in range(2))
    v = torch.randn(*shape, 5, generator=generator, dtype=torch.float64)
    g = -2 * torch.rand(*shape, generator=generator, dtype=torch.float64)
    beta = torch.rand(*shape, generator=generator, dtype=torch.float64)
    state = torch.randn(2, 3, 8, 5, generator=generator, dtype=torch.float64)
    chunked, final = delta_rule_chunked(q, k, v, g, beta, state)
    steps, recurrent = [], state
    for t in range(LENGTH):
        out, recurrent = delta_rule_step(*(x[:, :, t:t + 1] for x in (q, k, v, g, beta)), recurrent)
        steps.append(out)
    torch.testing.assert_close(chunked, torch.cat(steps, dim=2))
    torch.testing.assert_close(final, recurrent)


@pytest.mark.parametrize("arch, problem", [
    ("w64-h2-f2:ffn,ffn", "no token-mixing block"),
    ("w64-h8-f2:attn", "head dimension"),             # 64 / 8 = 8 < 16
    ("w192-h2-f2:attn", "head dimension"),            # 192 / 2 = 96 > 64
    ("w64-h2-f4:attn,gdn", "FFN ratio 4 without an ffn block"),
    ("w64-h2-f2:" + ",".join(["attn"] * (MAX_LAYERS + 1)), "blocks, expected"),
    ("w64-h2-f2:", "0 blocks"),
    ("w64-h2-f2:attn,conv", "unknown block 'conv'"),
    ("w80-h2-f2:attn", "field 'w80'"),
    ("w64-h2:attn", "expected 'w<width>"),
    ("w64-h2-f2-attn", "expected 'w<width>"),
])
def test_validity_rules_name_the_problem(arch, problem):
    with pytest.raises(HwlatError, match=problem):
        SPACE.canonical(arch)


def test_string_round_trip_and_whitespace():
    for arch in SPACE.sample(50, seed=0):
        assert SPACE.canonical(arch) == arch
        assert SPACE.canonical(f"  {arch}\n") == arch
    assert SPACE.sample(20, seed=4) == SPACE.sample(20, seed=4)
    assert len(set(SPACE.sample(200, seed=5))) == 200


def test_choices_round_trip_and_invalid_mixes():
    for arch in SPACE.sample(50, seed=1):
        chosen = SPACE.to_choices(arch)
        assert set(chosen) == set(SPACE.choices())
        assert all(chosen[name] in options for name, options in SPACE.choices().items())
        assert SPACE.from_choices(chosen) == arch
    chosen = SPACE.to_choices("w64-h2-f2:attn,ffn")
    with pytest.raises(HwlatError, match="no gaps"):
        SPACE.from_choices({**chosen, "layer1": "none", "layer2": "ffn"})
    with pytest.raises(HwlatError, match="no token-mixing"):
        SPACE.from_choices({**chosen, "layer0": "ffn"})


def test_encodings_distinguish_archs():
    archs = SPACE.sample(30, seed=2)
    onehot = SPACE.encode(archs, "onehot")
    assert onehot.shape == (30, 4 + 3 + 3 + MAX_LAYERS * (len(OPS) + 1))
    assert np.all(onehot.sum(axis=1) == 3 + MAX_LAYERS) and len({row.tobytes() for row in onehot}) == 30
    counts = SPACE.encode(["w64-h2-f2:attn,ffn,attn", "w64-h2-f2:attn,attn,ffn"], "counts")
    np.testing.assert_array_equal(counts[0], counts[1])  # order-free
    with pytest.raises(HwlatError, match="encoding kind"):
        SPACE.encode(archs, "adjacency")


def test_params_and_flops_grow_with_width_and_depth():
    small, wide, deep = "w64-h2-f2:gdn,ffn", "w128-h2-f2:gdn,ffn", "w64-h2-f2:gdn,ffn,gdn,ffn"
    assert SPACE.params(small) == sum(p.numel() for p in SPACE.build(small).parameters())
    assert SPACE.params(small) < SPACE.params(deep) and SPACE.params(small) < SPACE.params(wide)
    assert SPACE.flops(small) < SPACE.flops(deep) and SPACE.flops(small) < SPACE.flops(wide)
    assert SPACE.flops("w64-h2-f2:swa") < SPACE.flops("w64-h2-f2:attn")  # the window bounds attention's reads


def test_a_tiny_training_run_lowers_the_validation_loss():
    corpus = stdlib_corpus(str(Path(hwlat.__file__).parent))  # this package's sources: small and always there
    budget = Budget(steps=30, batch=4, context=32, lr=1e-2, warmup=3, valid_windows=16)
    arch = "w64-h2-f2:gdn,ffn"
    model = SPACE.build(arch)
    windows = validation_windows(corpus, budget)
    with torch.no_grad():
        logits = model(windows[:, :-1])
        initial = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), windows[:, 1:].reshape(-1)).item()
    result = trained_loss(arch, budget, corpus)
    assert result["val_loss"] < initial - 1.0
    proxies = zero_cost_proxies(arch, context=32, batch=2, corpus=corpus)
    assert proxies["init_loss"] > result["val_loss"] and proxies["grad_norm"] > 0
    assert corpus.describe()["files_valid"] >= 1 and corpus.describe()["bytes_train"] == corpus.train.size


def test_build_seed_redraws_the_weights_and_seed_zero_keeps_the_arch_seeded_init():
    arch = "w64-h2-f2:mamba,ffn"
    default, zero, one, again = (list(SPACE.build(arch, **kw).parameters())
                                 for kw in ({}, {"seed": 0}, {"seed": 1}, {"seed": 1}))
    assert all(torch.equal(a, b) for a, b in zip(default, zero))
    assert all(torch.equal(a, b) for a, b in zip(one, again))
    assert not all(torch.equal(a, b) for a, b in zip(default, one))


def test_training_seeds_give_different_losses_and_a_seed_repeats_exactly():
    corpus = stdlib_corpus(str(Path(hwlat.__file__).parent))
    budgets = [Budget(steps=4, batch=2, context=16, warmup=1, valid_windows=8, seed=s) for s in (0, 1, 0)]
    first, other, repeat = (trained_loss("w64-h2-f2:gdn", b, corpus)["val_loss"] for b in budgets)
    assert first == repeat and first != other
