"""ShiftAdd reparameterization of a trained ViT: accuracy before/after brief fine-tuning, MoE routing, energy.

1. Trains (or loads from the hwlat cache) VIT_DIGITS (12 blocks, dim 64) on scikit-learn's digits.
2. For several per-block choices, reparameterizes the trained model (no training), then fine-tunes it
   briefly; prints test accuracy before and after (the unconverted model fine-tuned the same way is the
   control), and for all-shift the accuracy of the exact integer shift kernels (Q16.16) in place of the
   float surrogate.
3. For MoE choices: the share of tokens sent to the shift expert per block, while fine-tuning (noisy
   gating, what the balance loss sees) and at evaluation (clean arg-max routing).
4. An energy ESTIMATE (45 nm per-op figures, compute only) for VIT_TINY with the same per-block choices,
   using the evaluation-time MoE shares measured in step 3, against the original model.
Hold the benchmark lock while it runs:

    flock /tmp/hwlat-bench.lock python benchmarks/shiftadd_accuracy.py [--epochs 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

from hwlat.shiftadd._config import VIT_DIGITS, VIT_TINY, BlockChoice, uniform_choices
from hwlat.shiftadd._energy import ENERGY_PJ, PAPER_SHIFT_FRACTION, estimate_energy
from hwlat.shiftadd._reparam import reparameterize
from hwlat.shiftadd._shift import ShiftLinear
from hwlat.shiftadd._train import (FINETUNE, Budget, base_cache_path, digits_split, evaluate, moe_shift_fractions,
                                   train, trained_base)

DEPTH = VIT_DIGITS.depth
CHOICES = {
    "original (softmax + dense), control": uniform_choices(DEPTH),
    "all-shift MLP": uniform_choices(DEPTH, mlp="shift"),
    "all-binary attention": uniform_choices(DEPTH, "binary"),
    "all-binary-linear attention": uniform_choices(DEPTH, "binary-linear"),
    "all-moe MLP": uniform_choices(DEPTH, mlp="moe"),
    "mixed (0-5 softmax+shift, 6-11 binary+moe)": (BlockChoice("softmax", "shift"),) * 6
    + (BlockChoice("binary", "moe"),) * 6,
    "ShiftAddViT-like (binary-linear + moe)": uniform_choices(DEPTH, "binary-linear", "moe"),
}


def integer_accuracy(model) -> float:
    """Test accuracy with every ShiftLinear on its exact integer path."""
    layers = [m for m in model.modules() if isinstance(m, ShiftLinear)]
    for layer in layers:
        layer.integer = True
    try:
        return evaluate(model, "test")
    finally:
        for layer in layers:
            layer.integer = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=FINETUNE.epochs, help="fine-tuning epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = digits_split()
    print(f"data: sklearn digits, train/val/test = {', '.join(str(len(splits[s][1])) for s in ('train', 'val', 'test'))}"
          f" images; load average {os.getloadavg()[0]:.2f}")
    cached = base_cache_path(VIT_DIGITS, args.seed, Budget()).exists()
    started = time.perf_counter()
    base = trained_base(VIT_DIGITS, seed=args.seed)
    print(f"base VIT_DIGITS ({Budget().epochs} epochs, {'loaded from cache' if cached else 'trained'} in "
          f"{time.perf_counter() - started:.0f} s): val {evaluate(base, 'val'):.4f}, test {evaluate(base, 'test'):.4f}")
    finetune = Budget(**{**FINETUNE.__dict__, "epochs": args.epochs})
    print(f"fine-tuning: {finetune.epochs} epochs, AdamW lr {finetune.lr}, batch {finetune.batch}; "
          f"one test image = {100 / len(splits['test'][1]):.2f} points\n")
    print("| choices | test acc. reparameterized | after fine-tuning | fine-tune s |\n|---|---|---|---|")
    fractions: dict[str, tuple[dict[int, float], dict[int, float]]] = {}
    integer = None
    calibration = splits["train"][0][:256]
    for name, choices in CHOICES.items():
        model = reparameterize(base, choices, calibration=calibration, seed=args.seed)
        before = evaluate(model, "test")
        started = time.perf_counter()
        train(model, finetune, args.seed)
        seconds = time.perf_counter() - started
        during = moe_shift_fractions(model)
        after = evaluate(model, "test")
        if during:
            fractions[name] = (during, moe_shift_fractions(model))
        if name == "all-shift MLP":
            integer = (after, integer_accuracy(model))
        print(f"| {name} | {before:.4f} | {after:.4f} | {seconds:.1f} |")
    print(f"\nall-shift MLP after fine-tuning, test accuracy: float surrogate {integer[0]:.4f}, "
          f"integer Q16.16 shift kernels {integer[1]:.4f}")
    print("\nMoE: share of tokens sent to the shift expert per block (balance-loss target with a = [6, 4]: "
          f"{PAPER_SHIFT_FRACTION:.2f})")
    for name, (during, at_eval) in fractions.items():
        print(f"- {name}: fine-tuning (noisy gating) {' '.join(f'{f:.2f}' for f in during.values())}; "
              f"test (clean arg-max) {' '.join(f'{f:.2f}' for f in at_eval.values())}")

    print(f"\nEnergy ESTIMATE per image, VIT_TINY ({VIT_TINY.tokens} tokens, dim {VIT_TINY.dim}, {VIT_TINY.depth} "
          f"blocks), compute only, 45 nm pJ/op {ENERGY_PJ}; MoE blocks use the test-time shares above")
    original = estimate_energy(VIT_TINY, uniform_choices(VIT_TINY.depth))
    print("| choices | µJ | saving vs original | fp32 mult µJ | fp32 add µJ | int32 add µJ | shift µJ |\n"
          "|---|---|---|---|---|---|---|")
    rows = {}
    for name, choices in CHOICES.items():
        measured = fractions.get(name, (None, {}))[1]
        rows[name] = (choices, [measured.get(i, PAPER_SHIFT_FRACTION) for i in range(VIT_TINY.depth)])
    rows[f"all-moe MLP at the {PAPER_SHIFT_FRACTION:.2f} target share"] = (uniform_choices(VIT_TINY.depth, mlp="moe"),
                                                                      PAPER_SHIFT_FRACTION)
    for name, (choices, share) in rows.items():
        estimate = estimate_energy(VIT_TINY, choices, share)
        parts = " | ".join(f"{estimate.energy_pj[op] / 1e6:.1f}" for op in ("fp32_mult", "fp32_add", "int32_add",
                                                                            "int32_shift"))
        print(f"| {name} | {estimate.total_uj:.1f} | {100 * estimate.saving(original):.1f} % | {parts} |")
    print(f"\nnot costed (counts for the original): {', '.join(f'{k} {v:.3g}' for k, v in original.uncosted.items())}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
