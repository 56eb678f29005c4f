"""HELP's protocol (pools, trimming, target samples, seeds) and the predictors' API, accuracy and file format."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset
from hwlat.predictors import (HELP_SPLITS, BasePredictor, HelpPredictor, OpPriorPredictor, ProxyPredictor,
                              TargetOnlyPredictor, evaluate, make_predictor, pools, score, source_view,
                              target_samples, trim)
from hwlat.spaces import get_space

SOURCES = HELP_SPLITS["nb201"]["meta_train"]


def samples_of(data, device, samples=10, seed=0):
    rows = target_samples(data, device, samples, seed)
    return [data.archs[i] for i in rows], data[device][rows]


def test_trim_drops_the_fastest_and_slowest_tenth():
    latency = np.array([5.0, 1, 9, 3, 7, 2, 8, 4, 6, 10, 0])
    kept = trim(np.arange(10), latency)  # index 10 is outside the pool and must not count
    assert sorted(latency[kept]) == [2, 3, 4, 5, 6, 7, 8, 9]


def test_pools_follow_helps_split(nb201):
    train, test = pools(nb201, "fpga")
    latency = nb201["fpga"]
    assert len(train) == 720 and set(train) <= set(range(900))
    assert len(test) == 800 and set(test) <= set(range(900, 1900))
    pool = latency[:900]
    assert latency[train].min() >= np.sort(pool)[90] and latency[train].max() <= np.sort(pool)[809]


def test_target_samples_are_references_plus_seeded_draws(nb201):
    train, _ = pools(nb201, "gold_6226")
    first = target_samples(nb201, "gold_6226", 10, seed=0)
    assert first[:10].tolist() == list(nb201.references)
    assert len(set(first[10:])) == 10 and set(first[10:]) <= set(train)
    assert np.array_equal(first, target_samples(nb201, "gold_6226", 10, seed=0))
    assert not np.array_equal(first, target_samples(nb201, "gold_6226", 10, seed=1))
    assert target_samples(nb201, "gold_6226", 0, seed=3).tolist() == list(nb201.references)
    with pytest.raises(HwlatError, match="samples must be in"):
        target_samples(nb201, "gold_6226", 721, seed=0)


def test_source_view_keeps_only_training_pools_and_references(nb201):
    view = source_view(nb201, ["fpga", "eyeriss"])
    assert view.devices == ("eyeriss", "fpga")
    measured = np.flatnonzero(np.isfinite(view["fpga"]))
    expected = np.union1d(pools(nb201, "fpga")[0], nb201.references)
    assert np.array_equal(measured, expected)


def test_evaluate_scores_every_seed_and_refuses_a_leak(nb201):
    result = evaluate(OpPriorPredictor(), nb201, "fpga", SOURCES, samples=5, seeds=3)
    assert result.measured == 15 and len(result.spearman) == 3 and len(set(result.spearman)) == 3
    assert result.spearman_mean == pytest.approx(np.mean(result.spearman))
    assert result.spearman_std == pytest.approx(np.std(result.spearman))
    with pytest.raises(HwlatError, match="also a training device"):
        evaluate(OpPriorPredictor(), nb201, "fpga", [*SOURCES, "fpga"])


@pytest.mark.parametrize(("target", "floor"), [("titan_rtx_256", 0.99), ("gold_6226", 0.985), ("fpga", 0.99),
                                               ("eyeriss", 0.98)])
def test_hwlat_predictor_beats_help_published_on_nb201(fitted, nb201, target, floor):
    result = score(fitted, nb201, target, samples=10, seeds=5)
    assert result.spearman_mean >= floor
    assert all(a < 1.0 for a in result.adapt_s)


def test_hwlat_predictor_uncertainty_and_unmeasured_archs(fitted, nb201):
    fitted.adapt(*samples_of(nb201, "fpga"))
    unseen = get_space("nb201").sample(50, seed=7)  # mostly outside every source's training pool
    mean, std = fitted.predict(unseen, return_std=True)
    assert mean.shape == std.shape == (50,) and np.all(std > 0) and np.all(mean > 0)
    truth = nb201["fpga"][[get_space("nb201").index(a) for a in unseen]]
    assert np.median(np.abs(mean - truth) / truth) < 0.05


def test_save_load_round_trip_without_pickles(fitted, nb201, tmp_path):
    fitted.adapt(*samples_of(nb201, "eyeriss"))
    path = fitted.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
    assert header["kind"] == "hwlat" and header["space"] == "nb201" and header["devices"] == sorted(SOURCES)
    loaded = BasePredictor.load(path)
    archs = list(nb201.archs[900:1000])
    assert np.allclose(loaded.predict(archs), fitted.predict(archs))
    assert loaded.get_params() == fitted.get_params()
    with pytest.raises(HwlatError, match="cannot write .*missing"):
        fitted.save(tmp_path / "missing" / "p.npz")


def test_load_refuses_other_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HwlatError, match="not a saved hwlat predictor"):
        BasePredictor.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "old.npz", header=np.asarray(json.dumps({"format": "hwlat-predictor", "version": 999})))
    with pytest.raises(HwlatError, match="version 999"):
        BasePredictor.load(tmp_path / "old.npz")


def test_adapt_validates_its_input(fitted, nb201):
    archs, latency = samples_of(nb201, "fpga")
    with pytest.raises(HwlatError, match="finite and positive"):
        OpPriorPredictor().fit(source_view(nb201, SOURCES[:2])).adapt(archs, -latency)
    with pytest.raises(HwlatError, match="latencies"):
        fitted.adapt(archs, latency[:3])
    with pytest.raises(HwlatError, match="must be fitted"):
        OpPriorPredictor().adapt(archs, latency)
    with pytest.raises(HwlatError, match="unknown predictor"):
        make_predictor("oracle")
    assert make_predictor("mlp").model == "mlp" and make_predictor("flops").proxy == "flops"


def test_target_only_baselines(nb201):
    data = nb201.subset(["fpga"])
    archs, latency = samples_of(nb201, "fpga", samples=20)
    for model in ("gb", "mlp", "lut"):
        predictor = TargetOnlyPredictor(model=model).fit(data.subset([])).adapt(archs, latency)
        assert predictor.predict(list(nb201.archs[:5])).shape == (5,)
        with pytest.raises(HwlatError, match="no uncertainty"):
            predictor.predict(archs, return_std=True)


def test_flops_proxy_orders_by_flops(nb201):
    space = get_space("nb201")
    archs = [space.arch(i) for i in range(4)]
    flops = np.array([space.flops(a) for a in archs], dtype=float)
    assert len(set(flops[:2])) == 2
    predictor = ProxyPredictor("flops").fit(nb201.subset([])).adapt(archs[:2], 1 + flops[:2] / 1e6)
    assert np.allclose(predictor.predict(archs), 1 + flops / 1e6)


def test_help_predictor_mechanics(nb201, tmp_path):
    predictor = HelpPredictor(iterations=2, query=20, hidden=16).fit(source_view(nb201, SOURCES[:2]))
    archs, latency = samples_of(nb201, "fpga", samples=5)
    with pytest.raises(HwlatError, match="reference archs"):
        predictor.adapt(archs[10:], latency[10:])
    predictor.adapt(archs, latency)
    loaded = BasePredictor.load(predictor.save(tmp_path / "h.npz"))
    test = list(nb201.archs[900:950])
    assert np.allclose(loaded.predict(test), predictor.predict(test), rtol=1e-5)
    no_refs = LatencyDataset("nb201", nb201.archs, {"a": nb201["fpga"]})
    with pytest.raises(HwlatError, match="needs reference archs"):
        HelpPredictor(iterations=1).fit(no_refs)


def test_adapt_within_a_second(fitted, nb201):
    archs, latency = samples_of(nb201, "titan_rtx_256")
    start = time.perf_counter()
    fitted.adapt(archs, latency)
    assert time.perf_counter() - start < 1.0  # throughput is measured by benchmarks/predictors_help.py


def test_single_source_device_still_gives_a_proper_prior(nb201):
    predictor = OpPriorPredictor().fit(source_view(nb201, ["gold_6240"]))
    predictor.adapt(*samples_of(nb201, "gold_6226"))
    mean, std = predictor.predict(list(nb201.archs[900:1000]), return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
