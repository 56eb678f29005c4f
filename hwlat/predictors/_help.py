"""HELP (Lee et al., NeurIPS 2021) re-implemented from the paper's description, compactly.

A device is embedded by the standardised latencies of the reference archs; an MLP maps (arch encoding,
hardware embedding) to the device's standardised latency. Its initial weights are meta-learned with MAML
(second order) over episodes of source devices: a few SGD steps on a device's support samples, loss on its
query samples. Adapting to a target runs the same inner steps on the target's samples. Not reproduced: HELP's
GCN encoder for NB201 (an MLP on the one-hot encoding instead) and its amortised, variational inner-loop
parameters (MetaD2A-style task-adaptive learning rates).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from hwlat._errors import HwlatError
from hwlat.datasets import LatencyDataset
from hwlat.predictors._base import BasePredictor
from hwlat.spaces import get_space


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-8)


class HelpPredictor(BasePredictor):
    """Hardware-embedding-conditioned MLP with MAML-learned initial weights (see module docstring)."""

    kind = "help"

    def __init__(self, hidden: int = 100, inner_steps: int = 5, inner_lr: float = 0.01, meta_lr: float = 1e-3,
                 iterations: int = 400, tasks_per_batch: int = 4, support: int = 10, query: int = 200,
                 random_state: int = 0) -> None:
        self.hidden = hidden
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.meta_lr = meta_lr
        self.iterations = iterations
        self.tasks_per_batch = tasks_per_batch
        self.support = support
        self.query = query
        self.random_state = random_state

    def _network(self, inputs: int) -> nn.Module:
        return nn.Sequential(nn.Linear(inputs, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden),
                             nn.ReLU(), nn.Linear(self.hidden, 1))

    def _inputs(self, x: np.ndarray, embedding: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.hstack([x, np.broadcast_to(embedding, (len(x), len(embedding)))]),
                               dtype=torch.float32)

    def _inner(self, params: dict, x: torch.Tensor, y: torch.Tensor, create_graph: bool) -> dict:
        """`inner_steps` SGD steps of the MSE on (x, y) from `params`."""
        for _ in range(self.inner_steps):
            loss = nn.functional.mse_loss(functional_call(self.net_, params, (x,)).squeeze(-1), y)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            params = {name: p - self.inner_lr * g for (name, p), g in zip(params.items(), grads)}
        return params

    def _fit(self, dataset: LatencyDataset) -> None:
        space = get_space(dataset.space)
        refs = np.asarray(dataset.references, dtype=int)
        if refs.size == 0:
            raise HwlatError("the help predictor needs reference archs (a hardware_embedding_index.pt)")
        self.references_ = [dataset.archs[i] for i in refs]
        tasks = []
        for device in dataset.devices:
            latency = dataset[device]
            if not np.all(np.isfinite(latency[refs])):
                raise HwlatError(f"source device {device!r} lacks latencies of the reference archs")
            rows = np.setdiff1d(np.flatnonzero(np.isfinite(latency)), refs)
            if len(rows) < self.support + 1:
                raise HwlatError(f"source device {device!r} has too few measured archs for meta-training")
            x = space.encode([dataset.archs[i] for i in rows])
            tasks.append((self._inputs(x, _standardise(latency[refs])),
                          torch.as_tensor(_standardise(latency[rows]), dtype=torch.float32)))
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        self.net_ = self._network(tasks[0][0].shape[1])
        optimiser = torch.optim.Adam(self.net_.parameters(), lr=self.meta_lr)
        for _ in range(self.iterations):
            optimiser.zero_grad()
            for t in rng.choice(len(tasks), size=min(self.tasks_per_batch, len(tasks)), replace=False):
                inputs, y = tasks[t]
                order = rng.permutation(len(y))
                sup, qry = order[:self.support], order[self.support:self.support + self.query]
                adapted = self._inner(dict(self.net_.named_parameters()), inputs[sup], y[sup], create_graph=True)
                loss = nn.functional.mse_loss(functional_call(self.net_, adapted, (inputs[qry],)).squeeze(-1), y[qry])
                loss.backward()
            optimiser.step()

    def _fit_state(self) -> dict[str, np.ndarray]:
        weights = {f"net.{name}": value.detach().numpy() for name, value in self.net_.state_dict().items()}
        return {"references": np.asarray(self.references_, dtype=str), **weights}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.references_ = state["references"].tolist()
        self.net_ = self._network(state["net.0.weight"].shape[1])
        weights = {name[4:]: torch.as_tensor(v) for name, v in state.items() if name.startswith("net.")}
        self.net_.load_state_dict(weights)

    def _adapt(self, archs: list[str], latencies: np.ndarray) -> None:
        position = {arch: i for i, arch in enumerate(archs)}
        missing = [a for a in self.references_ if a not in position]
        if missing:
            raise HwlatError(f"help predictor needs the target's latencies of all {len(self.references_)} reference "
                             f"archs ({len(missing)} missing, e.g. {missing[0]!r})")
        self.embedding_ = _standardise(latencies[[position[a] for a in self.references_]])
        self.mean_, self.std_ = latencies.mean(), latencies.std() + 1e-8
        inputs = self._inputs(get_space(self.space_).encode(archs), self.embedding_)
        y = torch.as_tensor((latencies - self.mean_) / self.std_, dtype=torch.float32)
        adapted = self._inner(dict(self.net_.named_parameters()), inputs, y, create_graph=False)
        self.adapted_ = {name: value.detach() for name, value in adapted.items()}

    def _predict(self, archs: list[str], return_std: bool) -> tuple[np.ndarray, None]:
        inputs = self._inputs(get_space(self.space_).encode(archs), self.embedding_)
        with torch.no_grad():
            out = functional_call(self.net_, self.adapted_, (inputs,)).squeeze(-1).numpy()
        return self.mean_ + self.std_ * out.astype(float), None
