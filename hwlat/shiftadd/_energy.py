"""Energy ESTIMATE of one image through a ShiftAdd ViT: arithmetic op counts times published per-op energies.

Per-operation energies, 45 nm CMOS, picojoules (the table ShiftAddViT's own estimate starts from,
`get_unit_energy` in GATECH-EIC/ShiftAddViT `pvt/hw_utils.py`):

    op           pJ     source
    fp32_mult    3.7    Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): 32-bit float multiply
    fp32_add     0.9    Horowitz ISSCC 2014: 32-bit float add
    int32_add    0.1    Horowitz ISSCC 2014: 32-bit integer add
    int32_shift  0.13   ShiftAddNet (You et al., NeurIPS 2020) Table 1, 45 nm ASIC, FIX32 bit-shift

Checked here: the four Horowitz figures as reproduced in a secondary table (PMC8934428, Table 3: int32 add
0.1, int32 mult 3.1, float32 add 0.9, float32 mult 3.7 pJ, "from Horowitz"); the primary paper was not
available to read. The shift figure (and the same 3.7 / 0.9 pJ) in ShiftAddViT's released code
(`unit_shift = 0.13` for 32 bits); ShiftAddNet's table itself was not found to read.

What is counted, per image (batch 1), and how:
- dense linear (rows x in -> out): rows*in*out fp32 mults and as many fp32 adds (accumulation + bias);
- shift linear: rows*in*out int32 shifts and int32 adds, plus float <-> Q16.16 conversions of inputs and
  outputs counted as fp32 mults (a power-of-two scale, so this overstates them);
- binary attention scores q_b . k_b: one int32 add per code bit per score, as ShiftAddViT's energy script
  counts binary matmuls (one addition per element; it costs them at the fp32 add figure, we at int32, since
  the sums are small integers); XOR + popcount hardware would cost less;
- binary-linear attention: the {-1, +1} products K_b^T [V, 1] and Q_b (.) as fp32 adds, the final division
  per value element as an fp32 mult;
- softmax: the row sums as fp32 adds and the normalisation as fp32 mults; residual adds; MoE router and
  the two experts weighted by the share of tokens each receives.
Not costed (no per-op figure in the sources), reported as counts: exp (softmax), GELU, LayerNorm elements.
Memory traffic (DRAM, SRAM, register files) is not modelled at all, so this is compute energy only and
omits what usually dominates a real accelerator's energy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from hwlat._errors import HwlatError
from hwlat.shiftadd._config import BlockChoice, ViTConfig
from hwlat.shiftadd._moe import PAPER_LATENCY

#: Energy per operation in pJ (45 nm); sources in the module docstring.
ENERGY_PJ = {"fp32_mult": 3.7, "fp32_add": 0.9, "int32_add": 0.1, "int32_shift": 0.13}
#: Counted but without an energy figure.
UNCOSTED = ("exp", "gelu", "layernorm")
#: Token share of the shift expert where ShiftAddViT's balance loss is zero for a = [6, 4].
PAPER_SHIFT_FRACTION = PAPER_LATENCY[0] / sum(PAPER_LATENCY)


def _dense(rows: float, fan_in: int, fan_out: int) -> Counter:
    return Counter(fp32_mult=rows * fan_in * fan_out, fp32_add=rows * fan_in * fan_out)


def _shift(rows: float, fan_in: int, fan_out: int) -> Counter:
    return Counter(int32_shift=rows * fan_in * fan_out, int32_add=rows * fan_in * fan_out,
                   fp32_mult=rows * (fan_in + fan_out))


def _mlp(config: ViTConfig, rows: float, shift: bool) -> Counter:
    linear = _shift if shift else _dense
    return linear(rows, config.dim, config.hidden) + linear(rows, config.hidden, config.dim) + Counter(
        gelu=rows * config.hidden)


def attention_ops(config: ViTConfig, kind: str) -> Counter:
    """Ops of one attention layer (projections included) on one image."""
    n, h, d, dim = config.tokens, config.heads, config.head_dim, config.dim
    ops = _dense(n, dim, 3 * dim) + _dense(n, dim, dim)
    scores = h * n * n
    if kind == "softmax":
        ops += Counter(fp32_mult=scores * d + scores, fp32_add=scores * d + scores, exp=scores)  # QK^T, softmax
        ops += Counter(fp32_mult=scores * d, fp32_add=scores * d)  # weights @ V
    elif kind == "binary":
        ops += Counter(int32_add=scores * d, fp32_mult=2 * scores, fp32_add=scores, exp=scores)  # codes, t, softmax
        ops += Counter(fp32_mult=scores * d, fp32_add=scores * d)
    elif kind == "binary-linear":
        ops += Counter(fp32_add=h * (2 * n * d * (d + 1) + n * (d + 1)), fp32_mult=h * n * (d + 1))
    else:
        raise HwlatError(f"shiftadd: unknown attention {kind!r}")
    return ops


def mlp_ops(config: ViTConfig, kind: str, shift_fraction: float = PAPER_SHIFT_FRACTION) -> Counter:
    """Ops of one MLP on one image; for "moe", `shift_fraction` of the tokens take the shift expert."""
    n = config.tokens
    if kind == "dense":
        return _mlp(config, n, shift=False)
    if kind == "shift":
        return _mlp(config, n, shift=True)
    if kind == "moe":
        if not 0.0 <= shift_fraction <= 1.0:
            raise HwlatError(f"shiftadd: MoE shift fraction {shift_fraction} is not in [0, 1]")
        router = _dense(n, config.dim, 2) + Counter(fp32_add=n)  # logits, arg-max compare
        return router + _mlp(config, n * (1 - shift_fraction), False) + _mlp(config, n * shift_fraction, True)
    raise HwlatError(f"shiftadd: unknown mlp {kind!r}")


def block_ops(config: ViTConfig, choice: BlockChoice, shift_fraction: float = PAPER_SHIFT_FRACTION) -> Counter:
    """Ops of one transformer block: two LayerNorms, attention, MLP, two residual adds."""
    n, dim = config.tokens, config.dim
    return (attention_ops(config, choice.attention) + mlp_ops(config, choice.mlp, shift_fraction)
            + Counter(layernorm=2 * n * dim, fp32_add=2 * n * dim))


def stem_ops(config: ViTConfig) -> Counter:
    """Patch embedding, class token and positions, final LayerNorm and head (always dense)."""
    patches, dim = config.tokens - 1, config.dim
    return (_dense(patches, config.channels * config.patch_size ** 2, dim) + Counter(fp32_add=config.tokens * dim)
            + Counter(layernorm=dim) + _dense(1, dim, config.num_classes))


def _energy(ops: Counter) -> float:
    return sum(ENERGY_PJ[op] * count for op, count in ops.items() if op in ENERGY_PJ)


@dataclass(frozen=True)
class EnergyEstimate:
    """Estimated compute energy of one image: op counts, pJ per op kind and per block, total in microjoules."""

    ops: dict[str, float]
    energy_pj: dict[str, float]
    block_pj: list[float]
    stem_pj: float
    uncosted: dict[str, float] = field(default_factory=dict)

    @property
    def total_uj(self) -> float:
        return sum(self.energy_pj.values()) / 1e6

    def saving(self, baseline: EnergyEstimate) -> float:
        """Fraction of `baseline`'s estimated energy this one saves (negative if it costs more)."""
        return 1.0 - self.total_uj / baseline.total_uj


def estimate_energy(config: ViTConfig, choices: Sequence[BlockChoice],
                    moe_shift_fraction: float | Sequence[float] = PAPER_SHIFT_FRACTION) -> EnergyEstimate:
    """Estimated compute energy per image of `config` with per-block `choices` (an ESTIMATE; see module doc).

    `moe_shift_fraction`: share of tokens the shift expert gets in MoE blocks, one value for all or one
    per block (entries for non-MoE blocks are ignored).
    """
    choices = tuple(choices)
    if len(choices) != config.depth:
        raise HwlatError(f"shiftadd: need {config.depth} block choices, got {len(choices)}")
    fractions = ([moe_shift_fraction] * config.depth if isinstance(moe_shift_fraction, (int, float))
                 else list(moe_shift_fraction))
    if len(fractions) != config.depth:
        raise HwlatError(f"shiftadd: need one MoE shift fraction or {config.depth}, got {len(fractions)}")
    blocks = [block_ops(config, choice, fraction) for choice, fraction in zip(choices, fractions)]
    stem = stem_ops(config)
    total = sum(blocks, Counter()) + stem
    return EnergyEstimate(
        ops={op: total[op] for op in ENERGY_PJ},
        energy_pj={op: ENERGY_PJ[op] * total[op] for op in ENERGY_PJ},
        block_pj=[_energy(ops) for ops in blocks], stem_pj=_energy(stem),
        uncosted={op: total[op] for op in UNCOSTED})
