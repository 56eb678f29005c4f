"""hwlat's predictor: evidence fits, model averaging, calibrated std, active selection and its protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import BayesianRidge

from hwlat._errors import HwlatError
from hwlat.predictors import (HELP_SPLITS, POOLS, BasePredictor, OpPriorPredictor, TargetOnlyPredictor,
                              active_samples, evaluate, score, source_view)
from hwlat.predictors._active import greedy_integrated_variance
from hwlat.predictors._oprior import _evidence_fits

SOURCES = HELP_SPLITS["nb201"]["meta_train"]


def test_evidence_fit_matches_bayesian_ridge_and_prefers_the_right_prior():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 4.0 + rng.normal(scale=0.1, size=60)
    right, wrong = np.eye(5), np.diag([1.0, 1.0, 1.0, 1.0, 1e-8])  # `wrong` all but forbids the 5th weight
    (evidence, shift, bias, covariance, noise), (worse, *_) = _evidence_fits(x, y, [right, wrong])
    reference = BayesianRidge().fit(x, y)
    assert np.allclose(shift, reference.coef_, atol=1e-3) and bias == pytest.approx(reference.intercept_, abs=1e-3)
    assert noise == pytest.approx(0.01, rel=0.5) and np.all(np.linalg.eigvalsh(covariance) > 0)
    assert evidence > worse + 10


def test_greedy_integrated_variance_picks_the_most_uncertain_direction_first():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    covariances = np.array([np.diag([1.0, 100.0])])
    region = np.array([True, True, True, True, False])  # the extreme last row is outside the typical range
    chosen = greedy_integrated_variance(features, covariances, np.array([0.01]), np.array([1.0]), region, 3)
    assert chosen[0] in (1, 2) and 4 not in chosen and len(set(chosen)) == 3
    assert chosen[1] in (0, 3)  # once the uncertain weight is pinned, the other one matters most
    everything = greedy_integrated_variance(features, covariances, np.array([0.01]), np.array([1.0]), region, 5)
    assert sorted(everything) == [0, 1, 2, 3, 4]  # the region used up, the rest follow


def test_select_skips_measured_and_repeated_archs(fitted, nb201):
    refs = list(nb201.references)
    fitted.adapt([nb201.archs[i] for i in refs], nb201["fpga"][refs])
    candidates = [nb201.archs[i] for i in range(900)] + [nb201.archs[5]]
    chosen = fitted.select(candidates, 20)
    assert len(set(chosen)) == 20 and not set(chosen) & set(refs) and 900 not in chosen
    predicted = fitted.predict(candidates[:900])
    low, high = np.quantile(predicted[~np.isin(np.arange(900), refs)], [0.1, 0.9])
    assert np.all((predicted[chosen] >= low) & (predicted[chosen] <= high))
    assert np.array_equal(chosen, fitted.select(candidates, 20))
    unmeasured = len(set(candidates) - {nb201.archs[i] for i in refs})
    with pytest.raises(HwlatError, match=f"count must be in 1..{unmeasured}"):
        fitted.select(candidates, unmeasured + 1)
    lut = TargetOnlyPredictor(model="lut").fit(nb201.subset([])).adapt(candidates[:5], np.ones(5))
    with pytest.raises(HwlatError, match="cannot choose"):
        lut.select(candidates, 3)


def test_active_samples_come_from_the_training_pool(fitted, nb201):
    rows = active_samples(fitted, nb201, "eyeriss", 10)
    refs = list(nb201.references)
    assert rows[:10].tolist() == refs and len(set(rows)) == 20
    assert np.all(rows[10:] < POOLS["nb201"][0]) and not set(rows[10:]) & set(refs)
    assert active_samples(fitted, nb201, "eyeriss", 0).tolist() == refs


def test_active_selection_on_gold_6226_beats_helps_ten_sample_figure_with_five(fitted, nb201):
    result = score(fitted, nb201, "gold_6226", samples=5, seeds=2, select="active")
    assert result.selection == "active" and result.measured == 15
    assert result.spearman_mean >= 0.989 and result.spearman_std == 0  # HELP published 0.989 with 10 samples
    with pytest.raises(HwlatError, match="selection 'clever' unknown"):
        score(fitted, nb201, "gold_6226", select="clever")


def test_evaluate_refuses_active_selection_it_cannot_do(nb201):
    with pytest.raises(HwlatError, match="needs the help protocol"):
        evaluate(OpPriorPredictor(), nb201, "fpga", SOURCES, protocol="holdout", select="active")
    with pytest.raises(HwlatError, match="cannot choose"):
        evaluate(TargetOnlyPredictor(model="lut"), nb201, "fpga", SOURCES, select="active")


def test_calibrated_std_covers_closer_to_95_percent(nb201):
    coverage = {}
    for calibrate in (True, False):
        predictor = OpPriorPredictor(calibrate=calibrate).fit(source_view(nb201, SOURCES))
        coverage[calibrate] = np.mean([np.mean(score(predictor, nb201, t, samples=10, seeds=2).within2std)
                                       for t in HELP_SPLITS["nb201"]["meta_valid"]])
    assert 0.92 <= coverage[True] <= 0.98
    assert abs(coverage[True] - 0.95) < abs(coverage[False] - 0.95)


def test_files_without_calibration_or_newer_prior_terms_still_load(fitted, nb201, tmp_path):
    """A file written before the kron terms and the std calibration existed (4 weights per prior)."""
    refs = list(nb201.references)
    fitted.adapt([nb201.archs[i] for i in refs], nb201["gold_6226"][refs])
    with np.load(fitted.save(tmp_path / "new.npz"), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "fit.calibration"}
    header = json.loads(str(arrays.pop("header")))
    header["params"] = {"encoding": "onehot", "source_alpha": 0.01, "priors": [[1, 0.01, 0, 0], [1, 1, 0, 0]]}
    np.savez(tmp_path / "old.npz", header=np.asarray(json.dumps(header)), **arrays)
    old = BasePredictor.load(tmp_path / "old.npz")
    assert old.calibration_ == 1.0 and len(old.prior_covariances_) == 2
    mean, std = old.predict(list(nb201.archs[900:950]), return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    loaded = BasePredictor.load(tmp_path / "new.npz")
    test = list(nb201.archs[900:950])
    assert loaded.calibration_ == fitted.calibration_ != 1.0
    assert np.allclose(loaded.predict(test, return_std=True), fitted.predict(test, return_std=True))
