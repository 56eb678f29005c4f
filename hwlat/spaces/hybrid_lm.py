"""Hybrid small language models (Nemotron-Flash style): stacks of attention, linear-attention, SSM and FFN blocks.

An arch is a width, a head count, an FFN ratio and a stack of up to `MAX_LAYERS` blocks, written
``w128-h4-f3:gdn,ffn,mamba,ffn,attn,ffn``. Blocks (`OPS`): ``attn`` full causal attention, ``swa`` sliding-window
attention over the last `WINDOW` tokens, ``gdn`` gated delta-rule linear attention, ``mamba`` a Mamba-2-style
selective scan, ``ffn`` a SwiGLU feed-forward block. Built models are byte-level (vocabulary 256) causal LMs.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from hwlat._errors import HwlatError
from hwlat.spaces._base import BaseSpace

#: block kinds, in encoding order
OPS: tuple[str, ...] = ("attn", "swa", "gdn", "mamba", "ffn")
#: blocks that mix information across time (a model needs at least one)
MIXERS: tuple[str, ...] = ("attn", "swa", "gdn", "mamba")
#: option of a layer decision that ends the stack (only trailing layers may take it)
EMPTY = "none"
MAX_LAYERS = 6
WIDTHS: tuple[int, ...] = (64, 96, 128, 192)
HEADS: tuple[int, ...] = (2, 4, 8)
FFN_RATIOS: tuple[int, ...] = (2, 3, 4)
#: allowed attention head dimension (width / heads), inclusive
HEAD_DIM_RANGE = (16, 64)
#: tokens a sliding-window attention block sees (itself included)
WINDOW = 32
#: byte-level vocabulary
VOCAB = 256
#: prompt length of `input_shape` (the prefill that TTFT and `flops` refer to)
PROMPT = 256


def _format(width: int, heads: int, ratio: int, blocks: Sequence[str]) -> str:
    return f"w{width}-h{heads}-f{ratio}:{','.join(blocks)}"


def _number(text: str, prefix: str, options: tuple[int, ...], where: str) -> int:
    """The integer of a ``<prefix><n>`` field, which must be one of `options`."""
    if not text.startswith(prefix) or not text[len(prefix):].isdigit() or int(text[len(prefix):]) not in options:
        raise HwlatError(f"{where}: field {text!r} must be {prefix}<n> with n in {', '.join(map(str, options))}")
    return int(text[len(prefix):])


def _check(width: int, heads: int, ratio: int, blocks: Sequence[str], where: str) -> None:
    """Raise HwlatError naming the first validity rule that the decoded arch breaks."""
    if not 1 <= len(blocks) <= MAX_LAYERS:
        raise HwlatError(f"{where}: {len(blocks)} blocks, expected 1..{MAX_LAYERS}")
    unknown = [b for b in blocks if b not in OPS]
    if unknown:
        raise HwlatError(f"{where}: unknown block {unknown[0]!r} (expected one of {', '.join(OPS)})")
    if not any(b in MIXERS for b in blocks):
        raise HwlatError(f"{where}: no token-mixing block (needs one of {', '.join(MIXERS)}; FFNs alone see one token)")
    low, high = HEAD_DIM_RANGE
    if width % heads or not low <= width // heads <= high:
        raise HwlatError(f"{where}: width {width} / {heads} heads must be a whole head dimension in {low}..{high}")
    if "ffn" not in blocks and ratio != FFN_RATIOS[0]:
        raise HwlatError(f"{where}: FFN ratio {ratio} without an ffn block (an FFN-free arch takes f{FFN_RATIOS[0]})")


def _parse(arch: object) -> tuple[int, int, int, tuple[str, ...]]:
    """(width, heads, FFN ratio, blocks) of `arch`; HwlatError naming the first problem."""
    if not isinstance(arch, str):
        raise HwlatError(f"hybrid-lm arch must be a string, got {type(arch).__name__} {arch!r}")
    where = f"hybrid-lm arch {arch!r}"
    head, colon, stack = arch.strip().partition(":")
    fields = head.split("-")
    if not colon or len(fields) != 3:
        raise HwlatError(f"{where}: expected 'w<width>-h<heads>-f<ratio>:<block>,<block>,...', "
                         f"e.g. {_format(128, 4, 3, ('gdn', 'ffn', 'attn', 'ffn'))!r}")
    width = _number(fields[0], "w", WIDTHS, where)
    heads = _number(fields[1], "h", HEADS, where)
    ratio = _number(fields[2], "f", FFN_RATIOS, where)
    blocks = tuple(stack.split(",")) if stack else ()
    _check(width, heads, ratio, blocks, where)
    return width, heads, ratio, blocks


def _arch_seed(arch: str) -> int:
    """A stable 63-bit seed derived from the canonical string."""
    return int.from_bytes(hashlib.sha256(arch.encode()).digest()[:8], "big") >> 1


class HybridLMSpace(BaseSpace):
    """Hybrid byte-level LMs: width x heads x FFN ratio x a stack of 1..6 blocks from `OPS`."""

    name = "hybrid-lm"

    def canonical(self, arch: str) -> str:
        """Validate `arch` and return its canonical string."""
        return _format(*_parse(arch))

    def parts(self, arch: str) -> tuple[int, int, int, tuple[str, ...]]:
        """(width, heads, FFN ratio, blocks) of `arch`."""
        return _parse(arch)

    def choices(self) -> dict[str, tuple[str, ...]]:
        """``width``, ``heads``, ``ffn_ratio`` and one decision per layer ``layer0``..``layer5`` (a block or none)."""
        return {"width": tuple(map(str, WIDTHS)), "heads": tuple(map(str, HEADS)),
                "ffn_ratio": tuple(map(str, FFN_RATIOS)),
                **{f"layer{i}": (*OPS, EMPTY) for i in range(MAX_LAYERS)}}

    def from_choices(self, chosen: Mapping[str, str]) -> str:
        """The arch of these decisions; HwlatError for a gap (a block after ``none``) or a broken rule."""
        layers = [str(chosen.get(f"layer{i}", EMPTY)) for i in range(MAX_LAYERS)]
        depth = layers.index(EMPTY) if EMPTY in layers else MAX_LAYERS
        if any(op != EMPTY for op in layers[depth:]):
            raise HwlatError(f"hybrid-lm choices: layer {depth} is none but a later layer has a block (no gaps)")
        return self.canonical(f"w{chosen.get('width')}-h{chosen.get('heads')}-f{chosen.get('ffn_ratio')}:"
                              + ",".join(layers[:depth]))

    def to_choices(self, arch: str) -> dict[str, str]:
        """The decisions of `arch`, keyed like `choices()` (layers past its depth are none)."""
        width, heads, ratio, blocks = _parse(arch)
        layers = [*blocks, *[EMPTY] * (MAX_LAYERS - len(blocks))]
        return {"width": str(width), "heads": str(heads), "ffn_ratio": str(ratio),
                **{f"layer{i}": op for i, op in enumerate(layers)}}

    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """`n` distinct valid archs: depth uniform in 1..6, blocks, width, heads and ratio uniform, invalid redrawn."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise HwlatError(f"hybrid-lm sample size {n!r} must be a positive integer")
        rng = np.random.default_rng(seed)
        found: dict[str, None] = {}
        for _ in range(1000 * n):
            blocks = [OPS[i] for i in rng.integers(len(OPS), size=rng.integers(1, MAX_LAYERS + 1))]
            ratio = FFN_RATIOS[rng.integers(len(FFN_RATIOS))] if "ffn" in blocks else FFN_RATIOS[0]
            width, heads = WIDTHS[rng.integers(len(WIDTHS))], HEADS[rng.integers(len(HEADS))]
            try:
                _check(width, heads, ratio, blocks, "sample")
            except HwlatError:
                continue
            found[_format(width, heads, ratio, blocks)] = None
            if len(found) == n:
                return list(found)
        raise HwlatError(f"hybrid-lm: could not draw {n} distinct archs")

    def encode(self, archs: Sequence[str], kind: str = "onehot") -> np.ndarray:
        """Float32 features, one row per arch.

        - ``"onehot"``: width, heads and FFN ratio one-hot, then per layer slot its block (or none) one-hot:
          4 + 3 + 3 + 6 x 6 = 46 columns.
        - ``"counts"``: per block kind its count n, n x w and n x w^2 (w = width / the largest width), then the FFN hidden
          width term n_ffn x ratio x w^2 and the number of attention heads in attention blocks: 17 columns.
          Order-free and close to linear in compute, for additive latency models.
        """
        if kind not in ("onehot", "counts"):
            raise HwlatError(f"hybrid-lm encoding kind {kind!r} unknown (expected onehot or counts)")
        if isinstance(archs, str):
            raise HwlatError("hybrid-lm encode expects a sequence of arch strings, got a single string")
        return np.array([(_onehot if kind == "onehot" else _counts)(*_parse(a)) for a in archs],
                        dtype=np.float32).reshape(len(archs), -1)

    def build(self, arch: str, seed: int = 0):  # -> hwlat.spaces._lm_blocks.HybridLM
        """The causal LM of `arch`, in eval mode; weights seeded from the arch (and `seed`, when not 0)."""
        import torch

        from hwlat.spaces._lm_blocks import Attention, FeedForward, GatedDeltaNet, HybridLM, Mamba

        canonical = self.canonical(arch)
        width, heads, ratio, blocks = _parse(canonical)
        makers = {"attn": lambda: Attention(width, heads), "swa": lambda: Attention(width, heads, WINDOW),
                  "gdn": lambda: GatedDeltaNet(width, heads), "mamba": lambda: Mamba(width, heads),
                  "ffn": lambda: FeedForward(width, ratio)}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_arch_seed(canonical if not seed else f"{canonical}#{seed}"))
            model = HybridLM([makers[b]() for b in blocks], width, VOCAB)
        return model.eval()

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """Token ids: (batch, PROMPT)."""
        return (batch_size, PROMPT)

    def flops(self, arch: str) -> int:
        """Multiply-adds of a prefill of `PROMPT` tokens at batch 1 (see `count_lm_macs`), cached per arch."""
        return _flops(self.canonical(arch))

    def params(self, arch: str) -> int:
        """Trainable parameters (the output head is tied to the embedding)."""
        return _params(self.canonical(arch))


def _onehot(width: int, heads: int, ratio: int, blocks: tuple[str, ...]) -> list[float]:
    row = [float(width == w) for w in WIDTHS] + [float(heads == h) for h in HEADS]
    row += [float(ratio == r) for r in FFN_RATIOS]
    for layer in range(MAX_LAYERS):
        op = blocks[layer] if layer < len(blocks) else EMPTY
        row += [float(op == o) for o in (*OPS, EMPTY)]
    return row


def _counts(width: int, heads: int, ratio: int, blocks: tuple[str, ...]) -> list[float]:
    w = width / max(WIDTHS)
    row = []
    for op in OPS:
        n = blocks.count(op)
        row += [n, n * w, n * w * w]
    return row + [blocks.count("ffn") * ratio * w * w, heads * (blocks.count("attn") + blocks.count("swa"))]


def count_lm_macs(model, tokens: int) -> int:
    """Multiply-adds of one prefill of `tokens` tokens at batch 1.

    Counts every `Linear` and `Conv1d` (hooked on a real forward pass), the tied output head, attention's
    scores and weighted values (each query over the keys it sees), and the recurrences' state reads and writes
    (the chunked forms add intra-chunk work that depends on the chunk size and is not counted).
    """
    import torch
    from torch import nn

    from hwlat.spaces._lm_blocks import SSM_STATE, Attention, GatedDeltaNet, Mamba

    total = 0

    def hook(module, _inputs, output) -> None:
        nonlocal total
        fan_in = module.in_features if isinstance(module, nn.Linear) else module.kernel_size[0]
        total += output.numel() * fan_in

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model(torch.zeros(1, tokens, dtype=torch.long))
    finally:
        for handle in handles:
            handle.remove()
    width = model.embed.embedding_dim
    total += tokens * width * model.embed.num_embeddings
    for module in model.modules():
        if isinstance(module, Attention):
            seen = sum(min(t + 1, module.window) if module.window else t + 1 for t in range(tokens))
            total += 2 * seen * width
        elif isinstance(module, GatedDeltaNet):
            total += 3 * tokens * width * width // module.heads
        elif isinstance(module, Mamba):
            total += 2 * tokens * module.inner * SSM_STATE
    return total


@functools.lru_cache(maxsize=4096)
def _flops(canonical: str) -> int:
    return count_lm_macs(HybridLMSpace().build(canonical), PROMPT)


@functools.lru_cache(maxsize=4096)
def _params(canonical: str) -> int:
    from hwlat.spaces._counting import count_params

    return count_params(HybridLMSpace().build(canonical))


__all__ = ["EMPTY", "FFN_RATIOS", "HEADS", "MAX_LAYERS", "MIXERS", "OPS", "PROMPT", "VOCAB", "WIDTHS", "WINDOW",
           "HybridLMSpace", "count_lm_macs"]
