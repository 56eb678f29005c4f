"""Active selection for Bayesian linear models: greedily pick the archs whose measurement cuts the most variance.

Under a linear-Gaussian model the posterior covariance after measuring an arch does not depend on the latency
measured, so a whole batch can be chosen before measuring any of it. The criterion is integrated variance
(I-optimal design): the drop in predictive variance summed over a `region` of the candidates, here the archs
the model predicts in its typical latency range, so that the batch serves the archs a user will rank, not the
extreme ones (which maximum-variance / D-optimal picks first). With a mixture of models (one per candidate
prior) the drops are averaged with the mixture weights.
"""

from __future__ import annotations

import numpy as np


def greedy_integrated_variance(features: np.ndarray, covariances: np.ndarray, noises: np.ndarray,
                               weights: np.ndarray, region: np.ndarray, count: int) -> list[int]:
    """Rows of `features` to measure next, `count` of them, chosen greedily from `region` (then from any row).

    `features` (n x d) are centred as the models' posteriors expect; `covariances` (k x d x d) the posterior
    covariances of the models' weights, `noises` (k) their noise variances, `weights` (k) the mixture weights;
    `region` (n, bool) the rows whose predictive variance counts and that are picked first.
    """
    inside = features[region]
    spread = inside.T @ inside / max(len(inside), 1)
    states = []
    for covariance, noise in zip(covariances, noises):
        projected = features @ covariance  # row j: covariance of arch j's prediction with each weight
        states.append([projected, np.einsum("ij,ij->i", projected, features), projected @ spread, noise])
    chosen: list[int] = []
    for _ in range(count):
        gain = np.zeros(len(features))
        for (projected, variance, spread_projected, noise), weight in zip(states, weights):
            gain += weight * np.einsum("ij,ij->i", spread_projected, projected) / (noise + variance)
        allowed = region.copy()
        allowed[chosen] = False
        if not allowed.any():  # the region is used up: any row not taken yet
            allowed = np.ones(len(features), dtype=bool)
            allowed[chosen] = False
        best = int(np.flatnonzero(allowed)[np.argmax(gain[allowed])])
        chosen.append(best)
        for state in states:
            projected, variance, spread_projected, noise = state
            row = projected[best]  # covariance times the chosen arch's features
            shared = projected @ features[best]  # covariance of every prediction with the chosen one
            denominator = noise + variance[best]
            state[0] = projected - np.outer(shared, row) / denominator
            state[1] = variance - shared ** 2 / denominator
            state[2] = spread_projected - np.outer(shared, spread @ row) / denominator
    return chosen
