"""hwlat's predictor: Bayesian linear regression on the arch encoding with a prior learned from source devices.

Latency on a device is close to additive in the choices an architecture makes (a ridge on the one-hot encoding
fitted on a device's own latencies ranks HELP's test pool at rho >= 0.997 on the NB201 and FBNet meta-test
devices at hand: the "ceiling" column of benchmarks/predictors_help.py). Each source
device gives one such cost vector; their mean and covariance form a Gaussian prior over the target's cost
vector, so a handful of target latencies pins down the posterior. Candidate priors mix, in units of the mean
prior variance: the sources' covariance, an independent term per choice ("jitter", so the target may depart
from what the sources span), a term shared by all positions that make the same choice ("op share": an op costs
alike wherever it sits), a bilinear term (each source's positions x choices cost matrix is close to rank one,
a position profile times per-choice costs, so the target may draw its own profile and choice costs around the
sources' ones), and a separable term (the target's cost matrix varies along the position profiles and along
the choice costs the sources vary along, in any combination: row covariance x column covariance of the
sources' cost matrices, "kron", or of their second moments, "kron2").

Each candidate's prior scale and noise variance maximise its evidence (the marginal likelihood of the target's
samples, with a flat prior on the intercept); the prediction averages the candidates weighted by their evidence
(Bayesian model averaging). The predictive std is scaled by a factor learned when fitting: each source device in turn is
predicted from the others' prior and a few of its own latencies, and the factor makes mean ± 1.96 std cover
95 % of its other latencies.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset
from hwlat.predictors._active import greedy_integrated_variance
from hwlat.predictors._base import BasePredictor
from hwlat.spaces import get_space

#: one-hot layouts where column `period * position + choice` encodes a choice at a position
_CHOICES_PER_POSITION = {"nb201": 5, "fbnet": 9}

#: candidate priors as weights of (sources' covariance, jitter, op share, bilinear, kron, kron2)
PRIORS: tuple[tuple[float, ...], ...] = (
    (1, 0.01, 0, 0, 0, 0), (1, 0.01, 0.1, 0, 0, 0), (1, 0.01, 1, 0, 0, 0), (1, 1, 0, 0, 0, 0),
    (1, 1, 0.1, 0, 0, 0), (1, 1, 1, 0, 0, 0), (1, 0.01, 0, 1, 0, 0), (0, 0.01, 0, 1, 0, 0),
    (1, 0.01, 0, 0, 1, 0), (0, 0.01, 0, 0, 1, 0), (1, 0.01, 0, 0, 0, 1), (0, 0.01, 0, 0, 0, 1))

#: target budgets (random latencies beside the references) of the leave-one-source-out calibration
CALIBRATION_BUDGETS = (0, 5, 10, 20)
#: latencies scored per source and budget in the calibration (a random subset when the source has more)
_CALIBRATION_SCORED = 1000
#: share of candidates, by predicted latency, whose variance active selection reduces (HELP trims alike)
SELECTION_REGION = (0.1, 0.9)
#: mixture weights below this are dropped after adaptation
_MIN_WEIGHT = 1e-4


def _covariance(rows: np.ndarray, jitter: float) -> np.ndarray:
    """Covariance of `rows` (one sample per row) plus `jitter` x its mean variance on the diagonal."""
    spread = rows - rows.mean(axis=0)
    covariance = spread.T @ spread / len(rows)
    return covariance + jitter * np.trace(covariance) / len(covariance) * np.eye(len(covariance))


def _unit(matrix: np.ndarray) -> np.ndarray:
    """`matrix` scaled to a mean diagonal of 1 (unchanged if its trace is 0)."""
    return matrix / (np.trace(matrix) / len(matrix) or 1.0)


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


def _separable(costs: np.ndarray, period: int, centred: bool) -> np.ndarray:
    """Row covariance (x) column covariance of the sources' cost matrices (their deviations if `centred`)."""
    matrices = costs.reshape(len(costs), -1, period)
    matrices = matrices - matrices.mean(axis=2, keepdims=True)  # a constant per position is the intercept's
    if centred:
        matrices = matrices - matrices.mean(axis=0)
    rows = np.einsum("sij,skj->ik", matrices, matrices)
    columns = np.einsum("sij,sik->jk", matrices, matrices)
    return np.kron(_unit(rows), _unit(columns))


def _contrasts(count: int) -> np.ndarray:
    """Orthonormal basis (count x count-1) of the vectors whose entries sum to 0."""
    centring = np.eye(count) - 1.0 / count
    return np.linalg.eigh(centring)[1][:, 1:]  # eigenvalues 0 (the ones vector), then 1


def _maximise_evidence(values: np.ndarray, squares: np.ndarray, iterations: int = 300) -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """Prior scale and noise variance of each row's model by MacKay's fixed-point updates (as BayesianRidge).

    Row k: the samples' contrasts have prior covariance scale x diag(values[k]) + noise x I in the eigenbasis
    where their squared coordinates are squares[k].
    """
    count = values.shape[1]
    spread = np.maximum(squares.mean(axis=1), 1e-300)
    scale, noise = spread / np.maximum(values.mean(axis=1), 1e-300), spread.copy()
    for _ in range(iterations):
        total = scale[:, None] * values + noise[:, None]
        effective = np.sum(scale[:, None] * values / total, axis=1)  # well-determined parameters
        norm = np.sum(scale[:, None] ** 2 * values * squares / total ** 2, axis=1)
        residual = np.sum(noise[:, None] ** 2 * squares / total ** 2, axis=1)
        new_scale = np.maximum(norm / np.maximum(effective, 1e-12), spread * 1e-12)
        new_noise = np.maximum(residual / np.maximum(count - effective, 1e-12), spread * 1e-12)
        done = np.allclose(new_scale, scale, rtol=1e-6, atol=0) and np.allclose(new_noise, noise, rtol=1e-6, atol=0)
        scale, noise = new_scale, new_noise
        if done:
            break
    return scale, noise


def _evidence_fits(x: np.ndarray, y: np.ndarray, priors: list[np.ndarray]) -> list[tuple]:
    """Per prior, a Bayesian linear fit of `y` on `x`: weights ~ N(0, scale x prior), flat intercept, noise.

    Scale and noise variance maximise the evidence of the samples' contrasts (the part of `y` the intercept
    cannot explain). Per prior: (log evidence, weights' posterior mean, intercept, their covariance, noise).
    """
    basis = _contrasts(len(y))
    design, target = basis.T @ x, basis.T @ y
    loads, values, vectors = [], [], []
    for prior in priors:
        loaded = design @ prior
        eigenvalues, eigenvectors = np.linalg.eigh(loaded @ design.T)
        loads.append(loaded)
        values.append(np.clip(eigenvalues, 0.0, None))
        vectors.append(eigenvectors)
    rotated = np.array([v.T @ target for v in vectors])
    scales, noises = _maximise_evidence(np.array(values), rotated ** 2)
    fits = []
    for prior, loaded, value, vector, turned, scale, noise in zip(priors, loads, values, vectors, rotated, scales,
                                                                  noises):
        total = scale * value + noise
        gain = loaded.T @ vector  # prior covariance times the contrasts' design, rotated
        shift = scale * gain @ (turned / total)
        covariance = scale * prior - scale ** 2 * (gain / total) @ gain.T
        evidence = -0.5 * float(np.sum(np.log(total) + turned ** 2 / total) + len(value) * np.log(2 * np.pi))
        fits.append((evidence, shift, float(y.mean() - x.mean(axis=0) @ shift), covariance, float(noise)))
    return fits


class OpPriorPredictor(BasePredictor):
    """Per-choice latency costs of the target, with a Gaussian prior from the source devices' costs.

    `source_alpha` is the ridge penalty of each source device's cost fit; `priors` are the candidate priors
    (see `PRIORS` and the module docstring; op-share, bilinear and kron terms need the "onehot" encoding of
    nb201 or fbnet, other spaces use the candidates without them); `calibrate` learns the std factor.
    """

    kind = "hwlat"
    provides_std = True
    can_select = True

    def __init__(self, encoding: str = "onehot", source_alpha: float = 1e-2,
                 priors: tuple[tuple[float, ...], ...] = PRIORS, calibrate: bool = True) -> None:
        self.encoding = encoding
        self.source_alpha = source_alpha
        self.priors = priors
        self.calibrate = calibrate

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
        if self.calibrate:
            self.calibration_ = self._calibration(dataset)

    def _calibration(self, dataset: LatencyDataset) -> float:
        """Std factor so that mean ± 1.96 std covers 95 % of each source's latencies predicted from the others."""
        if len(self.costs_) < 2:
            return 1.0
        rng = np.random.default_rng(0)
        references = np.asarray(dataset.references, dtype=int)
        errors = []
        for k, device in enumerate(dataset.devices):
            others = np.arange(len(self.costs_)) != k
            clone = type(self)(**{**self.get_params(), "calibrate": False})
            clone.space_, clone.devices_, clone.samples_ = self.space_, [], None
            clone._restore({"costs": self.costs_[others], "intercepts": self.intercepts_[others]})
            latency = dataset[device]
            first = references[np.isfinite(latency[references])]
            pool = np.setdiff1d(np.flatnonzero(np.isfinite(latency)), first)
            if not len(first):  # no reference archs: random ones stand in for them
                first = rng.choice(pool, size=min(10, len(pool) // 2), replace=False)
                pool = np.setdiff1d(pool, first)
            for budget in CALIBRATION_BUDGETS:
                drawn = rng.choice(pool, size=min(budget, len(pool) // 2), replace=False)
                rest = np.setdiff1d(pool, drawn)
                rest = rng.choice(rest, size=min(_CALIBRATION_SCORED, len(rest)), replace=False)
                rows = np.concatenate([first, drawn])
                if len(rows) < clone.min_samples or not len(rest):
                    continue
                clone.adapt([dataset.archs[i] for i in rows], latency[rows])
                mean, std = clone.predict([dataset.archs[i] for i in rest], return_std=True)
                errors.append(np.abs(latency[rest] - mean) / std)
        return float(np.quantile(np.concatenate(errors), 0.95) / 1.959964) if errors else 1.0

    def _fit_state(self) -> dict[str, np.ndarray]:
        return {"costs": self.costs_, "intercepts": self.intercepts_, "calibration": np.array(self.calibration_)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.costs_, self.intercepts_ = state["costs"], state["intercepts"]
        self.calibration_ = float(state.get("calibration", 1.0))
        self.mean_cost_ = self.costs_.mean(axis=0)
        size = self.costs_.shape[1]
        sources = _covariance(self.costs_, 0.0)
        unit = np.trace(sources) / size or np.mean(self.costs_ ** 2)  # a single source has no spread
        period = _CHOICES_PER_POSITION.get(self.space_) if self.encoding == "onehot" else None
        terms = [sources / unit, np.eye(size)]
        if period:
            shared = np.tile(np.eye(period), (size // period, 1))
            terms += [shared @ shared.T, _unit(_bilinear(self.costs_, period)),
                      _separable(self.costs_, period, centred=True), _separable(self.costs_, period, centred=False)]
        # one prior covariance per candidate usable here (the others need a term this space/encoding lacks)
        self.prior_covariances_ = [unit * sum(w * term for w, term in zip(weights, terms))
                                   for weights in self.priors if not any(weights[len(terms):])]
        if not self.prior_covariances_:
            raise HwlatError(f"none of the candidate priors applies to {self.space_} with {self.encoding} encoding")

    def _adapt(self, archs: list[str], latencies: np.ndarray) -> None:
        self.scale_ = latencies.mean()
        x = get_space(self.space_).encode(archs, self.encoding).astype(float)
        residual = latencies / self.scale_ - (x @ self.mean_cost_ + self.intercepts_.mean())
        fits = _evidence_fits(x, residual, self.prior_covariances_)
        evidence = np.array([fit[0] for fit in fits])
        weights = np.exp(evidence - evidence.max())
        kept = [fit for fit, weight in zip(fits, weights / weights.sum()) if weight >= _MIN_WEIGHT]
        self.weights_ = np.exp(np.array([fit[0] for fit in kept]) - evidence.max())
        self.weights_ /= self.weights_.sum()
        # each candidate as a linear model on the encoding: mean x @ shift + bias, weights' covariance, noise
        _, shifts, biases, covariances, noises = zip(*kept)
        self.shifts_, self.biases_ = np.array(shifts), np.array(biases)
        self.covariances_, self.noises_ = np.array(covariances), np.array(noises)
        self.mixed_covariance_ = np.tensordot(self.weights_, self.covariances_, axes=1)
        self.centre_ = x.mean(axis=0)  # the models fit an intercept on centred features

    def _predict(self, archs: list[str], return_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        x = get_space(self.space_).encode(archs, self.encoding)
        components = x @ self.shifts_.T + self.biases_
        mixed = components @ self.weights_
        mean = self.scale_ * (x @ self.mean_cost_ + self.intercepts_.mean() + mixed)
        if not return_std:
            return mean, None
        centred = x - self.centre_
        within = np.einsum("ij,ij->i", centred @ self.mixed_covariance_, centred) + self.weights_ @ self.noises_
        between = (components - mixed[:, None]) ** 2 @ self.weights_
        return mean, self.scale_ * self.calibration_ * np.sqrt(within + between)

    def _select(self, archs: list[str], count: int) -> np.ndarray:
        x = get_space(self.space_).encode(archs, self.encoding)
        predicted = self._predict(archs, False)[0]
        low, high = np.quantile(predicted, SELECTION_REGION)
        region = (predicted >= low) & (predicted <= high)
        chosen = greedy_integrated_variance(x - self.centre_, self.covariances_, self.noises_, self.weights_,
                                            region, count)
        return np.asarray(chosen, dtype=int)
