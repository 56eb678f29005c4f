"""HELP's evaluation protocol: index pools, 10th-90th percentile trimming, reference + random target samples."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset
from hwlat.predictors._base import BasePredictor

#: (training pool, test pool) sizes: the first archs by index, then the next ones (HELP's num_meta_train_sample)
POOLS: dict[str, tuple[int, int]] = {"nb201": (900, 1000), "fbnet": (4000, 1000), "ofa": (4000, 1000)}

_NB201_TRAIN = ("1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r", "samsung_a50", "pixel3",
                "essential_ph_1", "samsung_s7")
#: HELP's device splits per space: meta_train, meta_valid, meta_test
HELP_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "nb201": {"meta_train": _NB201_TRAIN,
              "meta_valid": ("titanx_1", "titanx_32", "titanx_256", "gold_6240"),
              "meta_test": ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")},
    "fbnet": {"meta_train": tuple(d.replace("_256", "_64") for d in _NB201_TRAIN),
              "meta_valid": ("titanx_1", "titanx_32", "titanx_64", "gold_6240"),
              "meta_test": ("fpga", "raspi4", "eyeriss")},
    "ofa": {"meta_train": tuple(f"{g}_{b}" for g in ("2080ti", "titan_xp", "v100") for b in (1, 32, 64)),
            "meta_valid": ("titan_rtx_1", "titan_rtx_32"),
            "meta_test": ("titan_rtx_64",)},
}

#: HELP's published Spearman rho with 10 samples (NeurIPS 2021), as quoted in the shared data README
HELP_PUBLISHED: dict[str, dict[str, float]] = {
    "nb201": {"titan_rtx_256": 0.987, "gold_6226": 0.989, "pixel2": 0.802, "raspi4": 0.890, "eyeriss": 0.940,
              "fpga": 0.985},
    "fbnet": {"raspi4": 0.887, "eyeriss": 0.943, "fpga": 0.892},
}


def trim(indices: np.ndarray, latency: np.ndarray, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """`indices` sorted by latency with the fastest `low` and slowest `1 - high` shares dropped, as HELP does."""
    order = indices[np.argsort(latency[indices], kind="stable")]
    return order[int(len(order) * low):int(len(order) * high)]


def pools(dataset: LatencyDataset, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed (training pool, test pool) row indices of `device` under HELP's split of `dataset.space`."""
    if dataset.space not in POOLS:
        raise HwlatError(f"no HELP pools for space {dataset.space!r} (spaces: {', '.join(POOLS)})")
    n_train, n_test = POOLS[dataset.space]
    if len(dataset.archs) < n_train + n_test:
        raise HwlatError(f"{dataset.space} dataset has {len(dataset.archs)} archs, "
                         f"HELP's pools need {n_train + n_test}")
    latency = dataset[device]
    return trim(np.arange(n_train), latency), trim(np.arange(n_train, n_train + n_test), latency)


def target_samples(dataset: LatencyDataset, device: str, samples: int, seed: int) -> np.ndarray:
    """Row indices the target gives: its reference archs plus `samples` random ones from its trimmed training pool."""
    train, _ = pools(dataset, device)
    if not 0 <= samples <= len(train):
        raise HwlatError(f"samples must be in 0..{len(train)} (the trimmed training pool), got {samples}")
    drawn = np.random.default_rng(seed).choice(train, size=samples, replace=False)
    return np.concatenate([np.asarray(dataset.references, dtype=int), drawn])


def active_samples(predictor: BasePredictor, dataset: LatencyDataset, device: str, samples: int) -> np.ndarray:
    """Row indices the target gives under active selection: its references, then `samples` chosen by `predictor`.

    `predictor` (fitted) is adapted here to the reference latencies, then chooses from the training pool. The pool
    is not trimmed: trimming ranks the target's latencies, which nobody has measured before choosing.
    """
    pools(dataset, device)  # HwlatError for spaces or datasets without HELP's pools
    n_train = POOLS[dataset.space][0]
    references = np.asarray(dataset.references, dtype=int)
    if not len(references):
        raise HwlatError("active selection starts from the reference archs, and the dataset has none")
    candidates = np.setdiff1d(np.arange(n_train), references)
    if not 0 <= samples <= len(candidates):
        raise HwlatError(f"samples must be in 0..{len(candidates)} (the training pool), got {samples}")
    if samples == 0:
        return references
    latency = dataset[device]
    predictor.adapt([dataset.archs[i] for i in references], latency[references])
    chosen = candidates[predictor.select([dataset.archs[i] for i in candidates], samples)]
    return np.concatenate([references, chosen])


def source_view(dataset: LatencyDataset, devices: Sequence[str]) -> LatencyDataset:
    """What HELP meta-trains on: each source device's trimmed training pool and reference archs, NaN elsewhere."""
    latency = {}
    for device in devices:
        keep = np.concatenate([pools(dataset, device)[0], np.asarray(dataset.references, dtype=int)])
        values = np.full(len(dataset.archs), np.nan)
        values[keep] = dataset[device][keep]
        latency[device] = values
    return LatencyDataset(dataset.space, dataset.archs, latency, dataset.references)


@dataclass(frozen=True)
class Evaluation:
    """Scores of one predictor on one target device over several seeds (one entry per seed in the lists).

    `within2std`: share of test archs whose latency lies within the predicted mean ± 2 std (empty without std).
    `selection`: how the target's samples were chosen ("random", or "active": by the predictor, the same rows
    for every seed).
    """

    target: str
    samples: int
    seeds: int
    measured: int
    spearman: list[float]
    mape: list[float]
    within10: list[float]
    adapt_s: list[float]
    within2std: list[float]
    spearman_mean: float
    spearman_std: float
    selection: str = "random"

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)


PROTOCOLS = ("help", "holdout")
#: how the target's samples beside its references are chosen: at random, or by the predictor (`active_samples`)
SELECTIONS = ("random", "active")


def evaluate(predictor: BasePredictor, dataset: LatencyDataset, target: str, train_devices: Sequence[str], *,
             samples: int = 10, seeds: int = 5, protocol: str = "help", select: str = "random") -> Evaluation:
    """Fit `predictor` on `train_devices`, then score it on `target`.

    "help": fit on the sources' `source_view`, then `score` (with `select`). "holdout": fit on everything the
    sources measured, then `holdout` (for datasets without HELP's pools, e.g. the project's own measurements).
    """
    if protocol not in PROTOCOLS:
        raise HwlatError(f"protocol {protocol!r} unknown (expected one of {', '.join(PROTOCOLS)})")
    if select not in SELECTIONS:
        raise HwlatError(f"selection {select!r} unknown (expected one of {', '.join(SELECTIONS)})")
    if select == "active" and protocol != "help":
        raise HwlatError("active selection needs the help protocol (it starts from the reference archs)")
    if select == "active" and not predictor.can_select:
        raise HwlatError(f"{predictor.kind} predictor cannot choose which archs to measure")
    if target in train_devices:
        raise HwlatError(f"target {target!r} is also a training device")
    dataset[target]  # unknown target: fail before fitting
    if protocol == "help":
        return score(predictor.fit(source_view(dataset, train_devices)), dataset, target, samples=samples,
                     seeds=seeds, select=select)
    return holdout(predictor.fit(dataset.subset(train_devices)), dataset, target, samples=samples, seeds=seeds)


def score(predictor: BasePredictor, dataset: LatencyDataset, target: str, *, samples: int = 10,
          seeds: int = 5, select: str = "random") -> Evaluation:
    """Per seed, adapt the fitted `predictor` to the target's HELP samples and score its trimmed test pool.

    `samples=0` is the strict protocol: the reference latencies are the target's only measurements.
    `select="active"`: the predictor chooses the samples (`active_samples`) instead of drawing them at random.
    """
    if select not in SELECTIONS:
        raise HwlatError(f"selection {select!r} unknown (expected one of {', '.join(SELECTIONS)})")
    if target in predictor.devices_:
        raise HwlatError(f"target {target!r} is one of the predictor's training devices")
    _, test = pools(dataset, target)
    if select == "active":
        rows = active_samples(predictor, dataset, target, samples)
        return _scored(predictor, dataset, target, seeds, lambda seed: (rows, test), samples, select)
    return _scored(predictor, dataset, target, seeds, lambda seed: (target_samples(dataset, target, samples, seed),
                                                                     test), samples)


def holdout(predictor: BasePredictor, dataset: LatencyDataset, target: str, *, samples: int = 10,
            seeds: int = 5) -> Evaluation:
    """Per seed, adapt to `samples` random archs the target measured and score on all its other measured archs."""
    measured = np.flatnonzero(np.isfinite(dataset[target]))
    if not 2 <= samples <= len(measured) - 2:
        raise HwlatError(f"samples must be in 2..{len(measured) - 2} ({target!r} measured {len(measured)} archs)")

    def draw(seed: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng(seed).permutation(measured)
        return order[:samples], order[samples:]

    return _scored(predictor, dataset, target, seeds, draw, samples)


def _scored(predictor: BasePredictor, dataset: LatencyDataset, target: str, seeds: int,
            draw: Callable[[int], tuple[np.ndarray, np.ndarray]], samples: int,
            selection: str = "random") -> Evaluation:
    """Adapt on and score each seed's (sample rows, test rows) from `draw(seed)`."""
    if target in predictor.devices_:
        raise HwlatError(f"target {target!r} is one of the predictor's training devices")
    if seeds < 1:
        raise HwlatError(f"seeds must be at least 1, got {seeds}")
    truth = dataset[target]
    scores: dict[str, list[float]] = {"spearman": [], "mape": [], "within10": [], "adapt_s": [], "within2std": []}
    for seed in range(seeds):
        rows, test = draw(seed)
        start = time.perf_counter()
        predictor.adapt([dataset.archs[i] for i in rows], truth[rows])
        scores["adapt_s"].append(time.perf_counter() - start)
        archs = [dataset.archs[i] for i in test]
        if predictor.provides_std:
            predicted, std = predictor.predict(archs, return_std=True)
            scores["within2std"].append(float(np.mean(np.abs(predicted - truth[test]) <= 2 * std)))
        else:
            predicted = predictor.predict(archs)
        error = np.abs(predicted - truth[test]) / truth[test]
        scores["spearman"].append(float(spearmanr(predicted, truth[test]).statistic))
        scores["mape"].append(float(error.mean()))
        scores["within10"].append(float((error <= 0.1).mean()))
    rho = np.asarray(scores["spearman"])
    return Evaluation(target, samples, seeds, len(rows), **scores, spearman_mean=float(rho.mean()),
                      spearman_std=float(rho.std()), selection=selection)
