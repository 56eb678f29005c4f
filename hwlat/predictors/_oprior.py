"""hwlat's predictor: Bayesian linear regression on the arch encoding with a prior learned from source devices.

Latency on a device is close to additive in the choices an architecture makes (a ridge on the one-hot encoding
fitted on a device's own latencies ranks HELP's test pool at rho >= 0.997 on the NB201 and FBNet meta-test
devices at hand: the "ceiling" column of benchmarks/predictors_help.py). Each source
device gives one such cost vector; their mean and covariance form a Gaussian prior over the target's cost
vector, so a handful of target latencies pins down the posterior. Candidate priors mix, in units of the mean
prior variance: the sources' covariance, an independent term per choice ("jitter", so the target may depart
from what the sources span), a term shared by all positions that make the same choice ("op share": an op costs
alike wherever it sits), and a bilinear term: each source's (positions x choices) cost matrix is close to rank
one, a position profile times per-choice costs, so the prior also lets the target draw its own profile and
choice costs around the sources' ones. Each target picks the candidate with the highest evidence (marginal
likelihood of its samples); `sklearn.linear_model.BayesianRidge` fits prior and noise scale by evidence too
and gives a predictive std.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import BayesianRidge, Ridge

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset
from hwlat.predictors._base import BasePredictor
from hwlat.spaces import get_space

#: one-hot layouts where column `period * position + choice` encodes a choice at a position
_CHOICES_PER_POSITION = {"nb201": 5, "fbnet": 9}

#: candidate priors as weights of (sources' covariance, jitter, op share, bilinear term)
PRIORS: tuple[tuple[float, float, float, float], ...] = (
    (1, 0.01, 0, 0), (1, 0.01, 0.1, 0), (1, 0.01, 1, 0), (1, 1, 0, 0), (1, 1, 0.1, 0), (1, 1, 1, 0),
    (1, 0.01, 0, 1), (0, 0.01, 0, 1))


def _covariance(rows: np.ndarray, jitter: float) -> np.ndarray:
    """Covariance of `rows` (one sample per row) plus `jitter` x its mean variance on the diagonal."""
    spread = rows - rows.mean(axis=0)
    covariance = spread.T @ spread / len(rows)
    return covariance + jitter * np.trace(covariance) / len(covariance) * np.eye(len(covariance))


def _bilinear(costs: np.ndarray, period: int) -> np.ndarray:
    """Prior covariance of a rank-one cost matrix around the sources' position profiles and choice costs.

    With cost = profile (x) choice costs, first order around the means: K_profile (x) c c' + p p' (x) K_choice.
    """
    profiles, choices = [], []
    for cost in costs:
        matrix = cost.reshape(-1, period)
        u, sigma, vt = np.linalg.svd(matrix - matrix.mean(axis=1, keepdims=True))
        sign = np.sign(u[:, 0].sum()) or 1.0
        size = np.abs(u[:, 0]).mean()
        profiles.append(sign * u[:, 0] / size)
        choices.append(sign * sigma[0] * vt[0] * size)
    profile, choice = np.mean(profiles, axis=0), np.mean(choices, axis=0)
    return (np.kron(_covariance(np.array(profiles), 0.1), np.outer(choice, choice))
            + np.kron(np.outer(profile, profile), _covariance(np.array(choices), 0.1)))


class OpPriorPredictor(BasePredictor):
    """Per-choice latency costs of the target, with a Gaussian prior from the source devices' costs.

    `source_alpha` is the ridge penalty of each source device's cost fit; `priors` are the candidate priors
    (see `PRIORS` and the module docstring; op-share and bilinear terms need the "onehot" encoding of nb201 or
    fbnet, other spaces use the candidates without them).
    """

    kind = "hwlat"
    provides_std = True

    def __init__(self, encoding: str = "onehot", source_alpha: float = 1e-2,
                 priors: tuple[tuple[float, float, float, float], ...] = PRIORS) -> None:
        self.encoding = encoding
        self.source_alpha = source_alpha
        self.priors = priors

    def _fit(self, dataset: LatencyDataset) -> None:
        measured = np.isfinite(dataset.matrix(dataset.devices))
        used = np.flatnonzero(measured.any(axis=1))
        if not len(used):
            raise HwlatError("the source devices measured no architecture")
        encoded = get_space(dataset.space).encode([dataset.archs[i] for i in used], self.encoding)
        x = np.zeros((len(dataset.archs), encoded.shape[1]), dtype=encoded.dtype)
        x[used] = encoded  # rows nobody measured are never used
        costs, intercepts = [], []
        for column, device in enumerate(dataset.devices):
            rows = np.flatnonzero(measured[:, column])
            if len(rows) < 2:
                raise HwlatError(f"source device {device!r} has fewer than 2 measured archs")
            y = dataset[device][rows]
            model = Ridge(alpha=self.source_alpha).fit(x[rows], y / y.mean())
            costs.append(model.coef_)
            intercepts.append(model.intercept_)
        self._restore({"costs": np.array(costs), "intercepts": np.array(intercepts)})

    def _fit_state(self) -> dict[str, np.ndarray]:
        return {"costs": self.costs_, "intercepts": self.intercepts_}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.costs_, self.intercepts_ = state["costs"], state["intercepts"]
        self.mean_cost_ = self.costs_.mean(axis=0)
        size = self.costs_.shape[1]
        sources = _covariance(self.costs_, 0.0)
        unit = np.trace(sources) / size or np.mean(self.costs_ ** 2)  # a single source has no spread
        period = _CHOICES_PER_POSITION.get(self.space_) if self.encoding == "onehot" else None
        terms = [sources / unit, np.eye(size)]
        if period:
            shared = np.tile(np.eye(period), (size // period, 1))
            bilinear = _bilinear(self.costs_, period)
            terms += [shared @ shared.T, bilinear / (np.trace(bilinear) / size or 1.0)]
        self.prior_roots_ = []  # one per usable candidate; prior covariance = root @ root.T
        for weights in self.priors:
            if any(weights[len(terms):]):
                continue  # needs a term this space/encoding lacks
            values, vectors = np.linalg.eigh(unit * sum(w * term for w, term in zip(weights, terms)))
            self.prior_roots_.append(vectors * np.sqrt(np.clip(values, 0, None)))
        if not self.prior_roots_:
            raise HwlatError(f"none of the candidate priors applies to {self.space_} with {self.encoding} encoding")

    def _adapt(self, archs: list[str], latencies: np.ndarray) -> None:
        self.scale_ = latencies.mean()
        x = get_space(self.space_).encode(archs, self.encoding)
        residual = latencies / self.scale_ - (x @ self.mean_cost_ + self.intercepts_.mean())
        fits = [(BayesianRidge(compute_score=True).fit(x @ root, residual), root) for root in self.prior_roots_]
        self.model_, self.prior_root_ = max(fits, key=lambda fit: fit[0].scores_[-1])

    def _predict(self, archs: list[str], return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = get_space(self.space_).encode(archs, self.encoding)
        features = x @ self.prior_root_
        mean = self.scale_ * (x @ self.mean_cost_ + self.intercepts_.mean() + self.model_.predict(features))
        return mean, self.scale_ * self.model_.predict(features, return_std=True)[1] if return_std else None
