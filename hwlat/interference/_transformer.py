"""Dual-branch transformer over the co-runners' metric window (CloudFormer-style), with target descriptors.

The temporal branch attends over time steps (a token per step: every metric's value and missing flag), the metric
branch across metrics (a token per metric: its series and summary statistics); both pool through a class token
conditioned on the descriptors, and a head on [temporal, metric, descriptors] predicts log-slowdowns, with
p90 >= median and p99 >= p90 by construction; or, over a physical base (`base="slice"`), each target's correction to
the base's log-slowdown.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit
from torch import nn

from hwlat._errors import HwlatError
from hwlat._torch import torch_threads
from hwlat.interference._baselines import base_log_slowdowns
from hwlat.interference._features import QUANTILE_TARGETS, TARGETS, InterferenceData
from hwlat.interference._model import InterferenceModel

#: summary statistics per metric token: mean, std, min, max over the window, fraction missing
_STATS = 5
#: which branches see the window (ablations): both, one of them, or none (descriptors only)
BRANCHES = ("both", "temporal", "metric", "none")
#: training losses on a log-slowdown error d = predicted - measured: "l1" |d|; "relative" |exp(d) - 1|, the
#: evaluation's |predicted - measured| / measured (d clamped at 3 so an early overshoot cannot blow up)
LOSSES = ("l1", "relative")


class _DualBranch(nn.Module):
    def __init__(self, n_metrics: int, n_descriptors: int, steps: int, d_model: int, heads: int, layers: int,
                 dropout: float, branches: str = "both", ordered: bool = True) -> None:
        super().__init__()
        self.ordered = ordered
        self.temporal_on, self.metric_on = branches in ("both", "temporal"), branches in ("both", "metric")
        self.step_in = nn.Linear(2 * n_metrics, d_model)
        self.position = nn.Parameter(0.02 * torch.randn(steps, d_model))
        self.metric_in = nn.Linear(steps + _STATS, d_model)
        self.metric_id = nn.Parameter(0.02 * torch.randn(n_metrics, d_model))
        self.cls = nn.Parameter(0.02 * torch.randn(2, d_model))
        self.descriptors = nn.Sequential(nn.Linear(n_descriptors, d_model), nn.GELU(), nn.Linear(d_model, d_model))

        def encoder() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, 0.0, batch_first=True,
                                               norm_first=True)  # dropout only in the head: cheaper, as good
            return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

        self.temporal, self.across = encoder(), encoder()
        self.head = nn.Sequential(nn.LayerNorm(3 * d_model), nn.Linear(3 * d_model, d_model), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(d_model, len(TARGETS)))
        #: output offsets: training mean of the median, softplus-inverse of the mean tail gaps and the training mean
        #: of the mean slowdown (ordered), or the training mean of each target (unordered: corrections to a base,
        #: whose tails may fall below its median)
        self.register_buffer("offset", torch.zeros(len(TARGETS)))

    def forward(self, x: torch.Tensor, missing: torch.Tensor, valid: torch.Tensor,
                descriptors: torch.Tensor) -> torch.Tensor:
        described = self.descriptors(descriptors)
        temporal = self._temporal(x, missing, valid, described) if self.temporal_on else torch.zeros_like(described)
        across = self._across(x, missing, valid, described) if self.metric_on else torch.zeros_like(described)
        out = self.head(torch.cat([temporal, across, described], dim=-1)) + self.offset
        if not self.ordered:
            return out
        median = out[:, :1]
        p90 = median + nn.functional.softplus(out[:, 1:2])
        return torch.cat([median, p90, p90 + nn.functional.softplus(out[:, 2:3]), out[:, 3:]], dim=1)

    def _temporal(self, x: torch.Tensor, missing: torch.Tensor, valid: torch.Tensor,
                  described: torch.Tensor) -> torch.Tensor:
        """Attention over time steps (a token per step), pooled by the descriptor-conditioned class token."""
        steps = self.step_in(torch.cat([x, missing], dim=-1)) + self.position[:x.shape[1]]
        steps = torch.cat([(self.cls[0] + described)[:, None], steps], dim=1)
        padding = torch.cat([torch.zeros(x.shape[0], 1, dtype=torch.bool), ~valid], dim=1)
        return self.temporal(steps, src_key_padding_mask=padding)[:, 0]

    def _across(self, x: torch.Tensor, missing: torch.Tensor, valid: torch.Tensor,
                described: torch.Tensor) -> torch.Tensor:
        """Attention across metrics (a token per metric's series), pooled by the descriptor-conditioned class token."""
        present = valid[..., None] & (missing == 0)
        series = torch.where(present, x, 0.0).transpose(1, 2)
        metrics = self.metric_in(torch.cat([series, _stats(x, present, valid)], dim=-1)) + self.metric_id
        metrics = torch.cat([(self.cls[1] + described)[:, None], metrics], dim=1)
        return self.across(metrics)[:, 0]


def _stats(x: torch.Tensor, present: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per metric (B x M x _STATS): mean, std, min, max of its present values, and its fraction missing."""
    count = present.sum(dim=1)
    safe = count.clamp(min=1)
    mean = torch.where(present, x, 0.0).sum(dim=1) / safe
    std = (torch.where(present, x - mean[:, None], 0.0) ** 2).sum(dim=1).div(safe).sqrt()
    low = torch.where(present, x, math.inf).amin(dim=1)
    high = torch.where(present, x, -math.inf).amax(dim=1)
    some = count > 0
    low, high = torch.where(some, low, 0.0), torch.where(some, high, 0.0)
    frac_missing = 1 - count / valid.sum(dim=1, keepdim=True).clamp(min=1)
    return torch.stack([mean, std, low, high, frac_missing], dim=-1)


class _Windows:
    """Standardised windows packed as tensors (steps padded to the longest), cropped to a model's length."""

    def __init__(self, windows: list[np.ndarray], n_metrics: int) -> None:
        self.lengths = torch.tensor([len(w) for w in windows])
        longest = max(1, int(self.lengths.max())) if windows else 1
        values = np.full((len(windows), longest, n_metrics), np.nan, dtype=np.float32)
        for i, window in enumerate(windows):
            values[i, :len(window)] = window
        self.missing = torch.from_numpy(np.isnan(values).astype(np.float32))
        self.x = torch.from_numpy(np.nan_to_num(values, nan=0.0))

    def crop(self, rows: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor,
             steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps [start, start + length) of each row, left-aligned in `steps` slots: x, missing, valid."""
        index = (starts[:, None] + torch.arange(steps)[None]).clamp(max=self.x.shape[1] - 1)
        gather = index[..., None].expand(-1, -1, self.x.shape[2])
        valid = torch.arange(steps)[None] < lengths[:, None]
        return self.x[rows].gather(1, gather), self.missing[rows].gather(1, gather), valid

    def random_crops(self, rows: torch.Tensor, steps: int, shortest: float,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Augmentation: a random sub-window of each row, between `shortest` of its length (at most `steps`) and all."""
        full = self.lengths[rows].clamp(max=steps).float()
        draw = torch.rand(len(rows), 2, generator=generator)
        lengths = torch.ceil(full * (shortest + (1 - shortest) * draw[:, 0])).long().clamp(min=1)
        starts = (draw[:, 1] * (self.lengths[rows] - lengths + 1).float()).long()
        return self.crop(rows, starts, lengths, steps)

    def even_crops(self, steps: int, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every row whole when it fits in `steps`, else `count` evenly spaced crops of `steps`: rows, starts, lengths."""
        crops = []  # (row, start, length)
        for i, length in enumerate(self.lengths.tolist()):
            if length <= steps:
                crops.append((i, 0, max(length, 1)))
            else:
                starts = np.unique(np.linspace(0, length - steps, count).round().astype(int))
                crops.extend((i, int(start), steps) for start in starts)
        rows, starts, lengths = torch.tensor(crops).T
        return rows, starts, lengths


class TransformerInterference(InterferenceModel):
    """An ensemble of dual-branch transformers over the co-runners' metric window and the descriptors.

    Each of `members` trains on its own seed and its own inner split: a `validation_fraction` of the training
    scenarios' `validation_groups` (e.g. workloads) is held out to stop training at the best epoch, so nothing
    is tuned on the scenarios evaluated later. Training windows are cropped at random (down to `crop` of their
    length) as augmentation; a window longer than `steps` is predicted from `crops` evenly spaced crops.
    Loss (`loss`, see LOSSES): the relative error the evaluation reports (default), or L1 on log-slowdown; the
    tails weighted by `tail_weight` (the median and the mean by 1). `extras` adds descriptor groups (EXTRAS: measured
    co-runner load, oversubscription).
    `base="slice"` (BASES) learns the correction to the time-slice mixture's log-slowdowns (`TimeSliceInterference`)
    instead of the log-slowdowns themselves, as `BoostedInterference` does.
    `branches` switches branches off for ablations ("temporal", "metric", or "none": descriptors only).
    Deterministic for a `seed`; torch uses `threads` threads.
    """

    kind = "transformer"

    def __init__(self, d_model: int = 32, heads: int = 4, layers: int = 1, dropout: float = 0.1, steps: int = 32,
                 members: int = 5, max_epochs: int = 200, patience: int = 25, batch_size: int = 32,
                 lr: float = 2e-3, weight_decay: float = 1e-2, crop: float = 0.5, crops: int = 4,
                 validation_fraction: float = 0.2, validation_groups: str = "workload", tail_weight: float = 0.5,
                 branches: str = "both", loss: str = "relative", extras: tuple[str, ...] = ("load", "threads"),
                 base: str = "none", threads: int = 1, seed: int = 0) -> None:
        self.d_model, self.heads, self.layers, self.dropout, self.steps = d_model, heads, layers, dropout, steps
        self.members, self.max_epochs, self.patience, self.batch_size = members, max_epochs, patience, batch_size
        self.lr, self.weight_decay, self.crop, self.crops = lr, weight_decay, crop, crops
        self.validation_fraction, self.validation_groups = validation_fraction, validation_groups
        self.tail_weight, self.branches, self.loss, self.extras = tail_weight, branches, loss, extras
        self.base, self.threads, self.seed = base, threads, seed

    def _network(self) -> _DualBranch:
        if self.branches not in BRANCHES:
            raise HwlatError(f"branches must be one of {', '.join(BRANCHES)}, got {self.branches!r}")
        if self.loss not in LOSSES:
            raise HwlatError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        return _DualBranch(len(self.spec_.metrics), len(self.spec_.descriptor_names), self.steps, self.d_model,
                           self.heads, self.layers, self.dropout, self.branches, ordered=self.base == "none")

    def _inputs(self, data: InterferenceData) -> tuple[_Windows, torch.Tensor]:
        windows = _Windows(self.spec_.windows(data), len(self.spec_.metrics))
        return windows, torch.from_numpy(self.spec_.descriptors(data).astype(np.float32))

    def _fit(self, data: InterferenceData, log_targets: np.ndarray) -> None:
        log_targets = log_targets - base_log_slowdowns(data, self.base)  # what the nets learn
        windows, descriptors = self._inputs(data)
        targets = torch.from_numpy(log_targets.astype(np.float32))
        if self.base == "none":
            quantiles = len(QUANTILE_TARGETS)
            gaps = np.clip(np.diff(log_targets[:, :quantiles], axis=1).mean(axis=0), 1e-3, None)
            offset = torch.tensor([log_targets[:, 0].mean(), *np.log(np.expm1(gaps)),
                                   *log_targets[:, quantiles:].mean(axis=0)], dtype=torch.float32)
        else:
            offset = torch.from_numpy(log_targets.mean(axis=0).astype(np.float32))
        self.nets_, self.epochs_ = [], []
        with torch_threads(self.threads):
            for member in range(self.members):
                train, validation = self._inner_split(data, self.seed + member)
                net, epochs = self._train(windows, descriptors, targets, offset, train, validation, self.seed + member)
                self.nets_.append(net)
                self.epochs_.append(epochs)

    def _inner_split(self, data: InterferenceData, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Training and early-stopping rows of one member (no validation with fewer than 10 scenarios)."""
        rows = np.arange(len(data))
        if len(data) < 10 or not self.validation_fraction:
            return rows, rows[:0]
        groups = data.scenarios.get(self.validation_groups)
        if groups is not None and groups.nunique() >= 3:
            splitter = GroupShuffleSplit(1, test_size=self.validation_fraction, random_state=seed)
            return next(splitter.split(rows, groups=groups.to_numpy()))
        return next(ShuffleSplit(1, test_size=self.validation_fraction, random_state=seed).split(rows))

    def _train(self, windows: _Windows, descriptors: torch.Tensor, targets: torch.Tensor, offset: torch.Tensor,
               train: np.ndarray, validation: np.ndarray, seed: int) -> tuple[_DualBranch, int]:
        """One member trained on `train` rows, stopped at its best epoch on `validation` rows (if any)."""
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        net = self._network()
        net.offset.copy_(offset)
        optimiser = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        weights = torch.tensor([1.0, self.tail_weight, self.tail_weight, 1.0])  # median, p90, p99, mean
        train_rows = torch.from_numpy(train)
        best, best_state, best_epoch = math.inf, None, self.max_epochs
        for epoch in range(self.max_epochs):
            net.train()
            for batch in train_rows[torch.randperm(len(train_rows), generator=generator)].split(self.batch_size):
                x, missing, valid = windows.random_crops(batch, self.steps, self.crop, generator)
                loss = (self._error(net(x, missing, valid, descriptors[batch]) - targets[batch]) * weights).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if len(validation):
                error = float((self._error(self._forward([net], windows, descriptors, validation)
                                           - targets[validation]) * weights).mean())
                if error < best - 1e-6:
                    best, best_state, best_epoch = error, copy.deepcopy(net.state_dict()), epoch + 1
                elif epoch + 1 - best_epoch >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return net, best_epoch

    def _error(self, difference: torch.Tensor) -> torch.Tensor:
        """Per-element loss of log-slowdown differences (predicted - measured), by `loss`."""
        if self.loss == "relative":
            return torch.expm1(difference.clamp(max=3.0)).abs()
        return difference.abs()

    def _forward(self, nets: list[_DualBranch], windows: _Windows, descriptors: torch.Tensor,
                 rows: np.ndarray | None = None) -> torch.Tensor:
        """Mean log-slowdowns over the nets and each window's crops (rows: a subset of the windows)."""
        owner, starts, lengths = windows.even_crops(self.steps, self.crops)
        if rows is not None:
            keep = torch.isin(owner, torch.from_numpy(np.asarray(rows)))
            owner, starts, lengths = owner[keep], starts[keep], lengths[keep]
        x, missing, valid = windows.crop(owner, starts, lengths, self.steps)
        modes = [net.training for net in nets]
        with torch.no_grad():
            for net in nets:
                net.eval()
            out = torch.stack([net(x, missing, valid, descriptors[owner]) for net in nets]).mean(dim=0)
        for net, mode in zip(nets, modes):
            net.train(mode)
        total = torch.zeros(len(windows.lengths), out.shape[1]).index_add_(0, owner, out)
        count = torch.zeros(len(windows.lengths)).index_add_(0, owner, torch.ones(len(owner)))
        mean = total / count.clamp(min=1)[:, None]
        return mean if rows is None else mean[torch.from_numpy(np.asarray(rows))]

    def _predict(self, data: InterferenceData) -> np.ndarray:
        windows, descriptors = self._inputs(data)
        with torch_threads(self.threads):
            correction = self._forward(self.nets_, windows, descriptors).numpy().astype(float)
        return correction + base_log_slowdowns(data, self.base)

    def _state(self) -> dict[str, np.ndarray]:
        state = {"epochs": np.asarray(self.epochs_)}
        for i, net in enumerate(self.nets_):
            state.update({f"m{i}.{k}": v.numpy() for k, v in net.state_dict().items()})
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.epochs_ = state["epochs"].tolist()
        self.nets_ = []
        for i in range(len(self.epochs_)):
            net = self._network()
            net.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in state.items()
                                 if k.startswith(f"m{i}.")})
            net.eval()
            self.nets_.append(net)
