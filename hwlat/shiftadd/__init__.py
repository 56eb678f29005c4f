"""ShiftAdd reparameterization of ViTs (ShiftAddViT): shift and binary-code layers, TVM kernels, per-block choice.

The shapes and choices load eagerly (the `shiftadd` search space uses them); the PyTorch and TVM parts are
imported on first use, so `import hwlat.spaces` stays light.
"""

from __future__ import annotations

import importlib

from hwlat.shiftadd._config import (ATTENTION_KINDS, MLP_KINDS, MODELS, VIT_DIGITS, VIT_TINY, BlockChoice, ViTConfig,
                                    get_model_config, uniform_choices)

_LAZY = {
    "ShiftLinear": "_shift", "SoftmaxAttention": "_attention", "HammingAttention": "_attention",
    "BinaryLinearAttention": "_attention", "MoEMlp": "_moe", "PAPER_LATENCY": "_moe",
    "VisionTransformer": "_vit", "build_vit": "_vit", "reparameterize": "_reparam",
    "Budget": "_train", "FINETUNE": "_train", "trained_base": "_train", "train": "_train", "evaluate": "_train",
    "finetuned_accuracy": "_train", "moe_shift_fractions": "_train", "digits_split": "_train",
    "estimate_energy": "_energy", "EnergyEstimate": "_energy", "ENERGY_PJ": "_energy",
    "PAPER_SHIFT_FRACTION": "_energy", "measure_vit_latency": "_tvm_latency", "block_latency_table": "_tvm_latency",
    "BlockLatencyTable": "_tvm_latency", "search_shiftadd": "_search", "WholeModelLatency": "_search",
}

__all__ = ["ATTENTION_KINDS", "MLP_KINDS", "MODELS", "VIT_DIGITS", "VIT_TINY", "BlockChoice", "ViTConfig",
           "get_model_config", "uniform_choices", *_LAZY]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"hwlat.shiftadd.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'hwlat.shiftadd' has no attribute {name!r}")
