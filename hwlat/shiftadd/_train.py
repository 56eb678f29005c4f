"""Accuracy of ShiftAdd ViTs on scikit-learn's 8x8 digits (bundled with scikit-learn, nothing downloaded).

The 1797 images are split once with a fixed seed into train / validation / test (70 / 15 / 15 %,
stratified). Training is AdamW with a cosine schedule on `TRAIN_THREADS` threads, deterministic for a
seed (random 1-pixel translations were tried and cost 30 points of accuracy: with 2x2 patches a shift
changes every token). The trained base model is cached under the hwlat home folder, keyed by its shape,
budget, seed and the source of the modules that define it, so searches and benchmarks reuse it.
`finetuned_accuracy` is what a search over per-block choices calls.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from hwlat._errors import HwlatError
from hwlat._files import write_atomically
from hwlat._home import hwlat_home
from hwlat._torch import torch_threads
from hwlat.shiftadd._config import VIT_DIGITS, BlockChoice, ViTConfig
from hwlat.shiftadd._moe import BALANCE_WEIGHT, MoEMlp
from hwlat.shiftadd._reparam import reparameterize
from hwlat.shiftadd._vit import VisionTransformer, build_vit

#: Seed of the train / validation / test split (fixed: every model is scored on the same images).
SPLIT_SEED = 0
TRAIN_THREADS = 2
_SPLITS = ("train", "val", "test")
#: Modules whose source defines the trained base model (its cache key includes their text).
_BASE_MODULES = ("_config.py", "_attention.py", "_vit.py", "_train.py")


@dataclass(frozen=True)
class Budget:
    """A training run: epochs of AdamW over the training split with a cosine learning-rate schedule."""

    epochs: int = 30
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 3

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or not self.lr > 0:
            raise HwlatError(f"shiftadd: invalid training budget {self}")


#: Brief fine-tuning after reparameterization.
FINETUNE = Budget(epochs=2, lr=1e-4, warmup_epochs=0, weight_decay=0.0)


@cache
def digits_split() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"train", "val", "test"} -> (images [N, 1, 8, 8] scaled to [-1, 1], labels [N])."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    index = np.arange(len(images))
    train, rest = train_test_split(index, test_size=0.3, random_state=SPLIT_SEED, stratify=digits.target)
    val, test = train_test_split(rest, test_size=0.5, random_state=SPLIT_SEED, stratify=digits.target[rest])
    return {name: (torch.from_numpy(images[part]), torch.from_numpy(digits.target[part]).long())
            for name, part in zip(_SPLITS, (train, val, test))}


def _moe_layers(model: torch.nn.Module) -> list[MoEMlp]:
    return [m for m in model.modules() if isinstance(m, MoEMlp)]


def train(model: VisionTransformer, budget: Budget = Budget(), seed: int = 0,
          balance_weight: float = BALANCE_WEIGHT) -> VisionTransformer:
    """Train `model` in place on the training split: cross-entropy plus `balance_weight` times the MoE losses.

    MoE token counts restart here, so afterwards they tell how training routed (noisy gating).
    """
    images, labels = digits_split()["train"]
    steps_per_epoch = math.ceil(len(images) / budget.batch)
    total, warmup = budget.epochs * steps_per_epoch, budget.warmup_epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(warmup, 1))
                                                 * 0.5 * (1 + math.cos(math.pi * step / total)))
    generator = torch.Generator().manual_seed(seed)
    moes = _moe_layers(model)
    for moe in moes:
        moe.reset_counts()
    model.train()
    with torch_threads(TRAIN_THREADS), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(budget.epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), budget.batch):
                batch = order[start:start + budget.batch]
                loss = F.cross_entropy(model(images[batch]), labels[batch])
                if moes:
                    loss = loss + balance_weight * sum(m.balance_loss for m in moes)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
    model.eval()
    return model


def evaluate(model: VisionTransformer, split: str = "val") -> float:
    """Top-1 accuracy on `split` ("train", "val" or "test"); MoE token counts restart here."""
    if split not in _SPLITS:
        raise HwlatError(f"shiftadd: unknown split {split!r} (choose from {', '.join(_SPLITS)})")
    images, labels = digits_split()[split]
    for moe in _moe_layers(model):
        moe.reset_counts()
    model.eval()
    with torch_threads(TRAIN_THREADS), torch.no_grad():
        predictions = model(images).argmax(dim=-1)
    return float((predictions == labels).double().mean())


def moe_shift_fractions(model: VisionTransformer) -> dict[int, float]:
    """Block index -> share of tokens its MoE sent to the shift expert since the last `train` or `evaluate`."""
    return {index: float(block.mlp.fractions()[1]) for index, block in enumerate(model.blocks)
            if isinstance(block.mlp, MoEMlp)}


def _source_digest() -> str:
    """SHA-256 of the modules that make the base model (model, data split, training loop)."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / name).read_bytes() for name in _BASE_MODULES)).hexdigest()


def base_cache_path(config: ViTConfig, seed: int, budget: Budget) -> Path:
    """Where the trained base of this shape, seed and budget is cached (changes with the model's source)."""
    key = json.dumps({"config": asdict(config), "seed": seed, "budget": asdict(budget), "code": _source_digest()},
                     sort_keys=True)
    return hwlat_home() / "shiftadd" / f"base-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def trained_base(config: ViTConfig = VIT_DIGITS, seed: int = 0, budget: Budget = Budget(),
                 use_cache: bool = True) -> VisionTransformer:
    """The original ViT (softmax attention, dense MLPs) trained on the digits; loaded from cache when present."""
    if config.image_size != 8 or config.channels != 1 or config.num_classes != 10:
        raise HwlatError("shiftadd: the digits data needs image_size 8, 1 channel and 10 classes")
    path = base_cache_path(config, seed, budget)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_vit(config)
    if use_cache and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    train(model, budget, seed)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically({path: lambda target: torch.save(model.state_dict(), target)})
    return model


def finetuned_accuracy(choices: Sequence[BlockChoice], base: VisionTransformer, epochs: int = FINETUNE.epochs,
                       seed: int = 0, split: str = "val") -> float:
    """Accuracy on `split` of `base` reparameterized to `choices` and fine-tuned for `epochs` (0: none)."""
    model = reparameterize(base, choices, calibration=digits_split()["train"][0][:256], seed=seed)
    if epochs:
        train(model, Budget(**{**asdict(FINETUNE), "epochs": epochs}), seed)
    return evaluate(model, split)
