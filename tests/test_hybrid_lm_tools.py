"""Serving-latency timing, its storage as separate objectives, and a search over the hybrid-lm space."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset
from hwlat.profilers import MeasurementProtocol
from hwlat.profilers._llm import llm_platform, profile_llm, time_llm
from hwlat.predictors import make_predictor
from hwlat.search import FunctionMetric, SpaceCount, run_search
from hwlat.spaces import get_space
from hwlat.store import MeasurementStore

QUICK = MeasurementProtocol(warmup_runs=1, warmup_seconds=0.0, min_repeats=6, time_budget_s=0.05)


def test_time_llm_gives_ttft_and_tpot_and_a_longer_prompt_costs_more_prefill():
    short = time_llm("hybrid-lm", "w64-h2-f2:attn,ffn", 1, 8, QUICK)
    long = time_llm("hybrid-lm", "w64-h2-f2:attn,ffn", 2, 256, QUICK)
    assert set(short) == {"ttft", "tpot"} and short["tpot"]["n"] >= 6
    assert long["ttft"]["median_ms"] > short["ttft"]["median_ms"]
    with pytest.raises(HwlatError, match="must be positive"):
        time_llm("hybrid-lm", "w64-h2-f2:attn", 0, 8, QUICK)
    with pytest.raises(HwlatError, match="no prefill"):
        time_llm("nb201", get_space("nb201").sample(1, seed=0)[0], 1, 8, QUICK)


def test_profile_llm_stores_ttft_and_tpot_as_separate_platforms_and_resumes(tmp_path):
    store = MeasurementStore(tmp_path / "m.sqlite")
    archs = ["w64-h2-f2:gdn", "w64-h2-f2:swa,ffn"]
    assert profile_llm(archs, batch_sizes=(1, 2), prompt=16, protocol=QUICK, store=store) == 8
    assert profile_llm(archs, batch_sizes=(1, 2), prompt=16, protocol=QUICK, store=store) == 0
    data = LatencyDataset.from_frame(store.frame(), "hybrid-lm", device_key=("platform",))
    expected = {llm_platform(m, 1, b, 16) for m in ("ttft", "tpot") for b in (1, 2)}
    assert set(data.devices) == expected and set(data.archs) == set(archs)
    assert all(np.all(data[d] > 0) for d in data.devices)
    with pytest.raises(HwlatError, match="unknown LLM latency"):
        llm_platform("itl", 1, 1, 16)


def test_cpu_clock_is_stored_as_its_own_platforms(tmp_path):
    store = MeasurementStore(tmp_path / "m.sqlite")
    assert profile_llm(["w64-h2-f2:gdn"], prompt=16, protocol=QUICK, store=store, clock="cpu") == 2
    assert set(store.frame()["platform"]) == {llm_platform(m, 1, 1, 16, "cpu") for m in ("ttft", "tpot")}
    assert llm_platform("ttft", 1, 1, 16, "cpu").endswith("/ttft-p16/cpu")
    with pytest.raises(HwlatError, match="unknown clock"):
        time_llm("hybrid-lm", "w64-h2-f2:gdn", 1, 8, QUICK, clock="gpu")


def _depth(arch: str) -> float:
    return float(len(get_space("hybrid-lm").parts(arch)[3]))


def test_aging_evolution_and_nsga2_search_the_space_within_its_validity_rules():
    for strategy in ("evolution", "nsga2"):
        result = run_search("hybrid-lm", [FunctionMetric("depth", _depth, goal="max"), SpaceCount("hybrid-lm", "params")],
                            strategy=strategy, trials=20, seed=0, population_size=6)
        done = result.evaluated
        assert len(done) == 20 and done["arch"].map(get_space("hybrid-lm").canonical).eq(done["arch"]).all()
        assert len(result.front) >= 1


def _additive_loss(arch: str) -> float:
    """A synthetic loss with a per-position block cost and a width term, the form a one-hot ridge can learn.

    Its optimum (six Mamba blocks at width 192) is rare among random draws, so only a guided search reaches it."""
    width, _, _, blocks = get_space("hybrid-lm").parts(arch)
    cost = {"attn": 0.05, "swa": 0.05, "gdn": -0.05, "mamba": -0.1, "ffn": -0.03}
    return 3.0 - width / 400 + sum(cost[b] * (1.5 if i == 0 else 0.5) for i, b in enumerate(blocks))


def test_a_one_hot_ridge_loss_surrogate_screens_a_search_past_its_training_archs():
    space = get_space("hybrid-lm")
    train, held_out = space.sample(40, seed=1), space.sample(80, seed=2)[40:]
    data = LatencyDataset("hybrid-lm", tuple(train), {"unused": np.ones(len(train))})
    surrogate = make_predictor("lut").fit(data).adapt(train, [_additive_loss(a) for a in train])
    truth = np.array([_additive_loss(a) for a in held_out])
    assert spearmanr(surrogate.predict(held_out), truth).statistic > 0.9
    metric = FunctionMetric("pred_loss", lambda a: float(surrogate.predict([a])[0]), goal="min", costly=False)
    result = run_search("hybrid-lm", [metric, SpaceCount("hybrid-lm", "params")], strategy="evolution", trials=150,
                        seed=0, population_size=20)
    found = min(_additive_loss(a) for a in result.front["arch"])
    assert found < min(_additive_loss(a) for a in [*train, *space.sample(150, seed=3)])
