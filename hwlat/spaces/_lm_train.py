"""Accuracy proxies of the hybrid LMs: validation loss after a fixed short training budget, and zero-cost proxies.

The corpus is the running Python's standard-library sources (``*.py`` outside ``test``/``tests``/``idlelib``/
``site-packages``), read as bytes, so every machine has it offline. Files go to validation when the first byte
of the SHA-256 of their relative path is below 256 / `VALID_EVERY`, else to training; `Corpus.describe()`
records the Python version, file and byte counts and a digest, since another Python has other sources.
"""

from __future__ import annotations

import hashlib
import json
import math
import sysconfig
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from hwlat._errors import HwlatError

#: one file in this many (by path hash) is validation text
VALID_EVERY = 10
_SKIPPED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__"}


@dataclass(frozen=True)
class Budget:
    """A fixed training budget: AdamW steps of `batch` windows of `context` bytes, then validation windows.

    `seed` sets the data order; when not 0 it also re-draws the initial weights (seed 0 keeps the arch-seeded
    init of `build`), so losses over several seeds measure the run-to-run noise of the budget.
    """

    steps: int = 100
    batch: int = 8
    context: int = 64
    lr: float = 3e-3
    warmup: int = 10
    valid_windows: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.steps, self.batch, self.context, self.valid_windows) < 1 or not self.lr > 0:
            raise HwlatError(f"invalid training budget {self}: counts and lr must be positive")


@dataclass(frozen=True)
class Corpus:
    """Training and validation bytes of a source tree."""

    root: str
    train: np.ndarray
    valid: np.ndarray
    files: tuple[int, int]

    def describe(self) -> dict:
        """What the corpus is, JSON-ready: root, Python, file and byte counts per split, SHA-256 of both."""
        digest = hashlib.sha256(self.train.tobytes() + self.valid.tobytes()).hexdigest()[:16]
        return {"root": self.root, "python": sysconfig.get_python_version(), "files_train": self.files[0],
                "files_valid": self.files[1], "bytes_train": int(self.train.size),
                "bytes_valid": int(self.valid.size), "sha256": digest, "valid_every": VALID_EVERY}


@cache
def stdlib_corpus(root: str | None = None) -> Corpus:
    """The standard library's sources (or any tree of ``*.py`` files at `root`) split by file."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in base.rglob("*.py") if not _SKIPPED_DIRS & set(p.relative_to(base).parts[:-1]))
    if not paths:
        raise HwlatError(f"no Python sources under {base} to train on")
    parts: dict[bool, list[bytes]] = {True: [], False: []}
    for path in paths:
        is_valid = hashlib.sha256(path.relative_to(base).as_posix().encode()).digest()[0] < 256 // VALID_EVERY
        parts[is_valid].append(path.read_bytes() + b"\n")
    if not parts[True] or not parts[False]:
        raise HwlatError(f"{base}: too few files for a train/validation split")
    train, valid = (np.frombuffer(b"".join(parts[split]), dtype=np.uint8) for split in (False, True))
    return Corpus(str(base), train, valid, (len(parts[False]), len(parts[True])))


def _windows(data: np.ndarray, starts: np.ndarray, context: int):  # -> torch.Tensor
    """(len(starts), context + 1) int64 windows of `data` beginning at `starts`."""
    import torch

    return torch.from_numpy(np.stack([data[s:s + context + 1] for s in starts]).astype(np.int64))


def _loss(model, windows):  # -> torch.Tensor (torch imported lazily)
    """Mean next-byte cross-entropy of `model` over (batch, context + 1) `windows`."""
    import torch.nn.functional as F

    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


def validation_windows(corpus: Corpus, budget: Budget):
    """The fixed validation windows: evenly spaced over the validation bytes."""
    starts = np.linspace(0, corpus.valid.size - budget.context - 2, budget.valid_windows).astype(np.int64)
    return _windows(corpus.valid, starts, budget.context)


def trained_loss(arch: str, budget: Budget = Budget(), corpus: Corpus | None = None, space: str = "hybrid-lm") -> dict:
    """Train `arch` from its seeded init for `budget` and return train/validation loss (nats per byte) and time."""
    import time

    import torch

    from hwlat.spaces import get_space

    corpus = corpus or stdlib_corpus()
    model = get_space(space).build(arch, seed=budget.seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=0.1, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / budget.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(step, budget.steps) / budget.steps)))
    rng = np.random.default_rng(budget.seed)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(budget.seed)
        for _ in range(budget.steps):
            starts = rng.integers(0, corpus.train.size - budget.context - 1, size=budget.batch)
            loss = _loss(model, _windows(corpus.train, starts, budget.context))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        valid = float(_loss(model, validation_windows(corpus, budget)))
    if not math.isfinite(valid):
        raise HwlatError(f"training {arch!r} diverged (validation loss {valid})")
    return {"val_loss": valid, "train_loss": loss.item(), "train_s": time.perf_counter() - started}


def zero_cost_proxies(arch: str, context: int = 64, batch: int = 8, space: str = "hybrid-lm",
                      corpus: Corpus | None = None) -> dict[str, float]:
    """Proxies from the untrained model on one training batch (no optimisation step).

    ``init_loss`` (cross-entropy at init), ``grad_norm`` (L2 norm of the gradient), ``snip`` (sum over weights of
    |w x dL/dw|, Lee et al. 2019), plus ``params`` and ``flops`` from the space.
    """
    from hwlat.spaces import get_space

    corpus = corpus or stdlib_corpus()
    model = get_space(space).build(arch).train()
    starts = np.random.default_rng(0).integers(0, corpus.train.size - context - 1, size=batch)
    loss = _loss(model, _windows(corpus.train, starts, context))
    loss.backward()
    grads = [(p, p.grad) for p in model.parameters() if p.grad is not None]
    return {"init_loss": loss.item(), "grad_norm": sum((g ** 2).sum().item() for _, g in grads) ** 0.5,
            "snip": sum((p * g).abs().sum().item() for p, g in grads),
            "params": float(get_space(space).params(arch)), "flops": float(get_space(space).flops(arch))}


class TrainedLossCache:
    """`trained_loss` per arch, kept in a JSON-lines file so reruns and other scripts reuse finished trainings.

    Callable as `cache(arch) -> validation loss`, so it serves as a search metric's function.
    """

    def __init__(self, path: str | Path, budget: Budget = Budget()) -> None:
        self.path, self.budget = Path(path), budget
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                row = json.loads(line)
                if row["budget"] == asdict(budget):
                    self.rows[row["arch"]] = row

    def __call__(self, arch: str) -> float:
        if arch not in self.rows:
            row = {"arch": arch, **trained_loss(arch, self.budget), "budget": asdict(self.budget),
                   "corpus": stdlib_corpus().describe()}
            with self.path.open("a") as stream:
                stream.write(json.dumps(row) + "\n")
            self.rows[arch] = row
        return self.rows[arch]["val_loss"]
