"""NumPy references of the ShiftAdd primitives: the exact results the PyTorch layers and TVM kernels must match.

Conventions (ShiftAddViT's code, see the project's notes): a shift weight is `sign * 2**-shift` with `sign` in
{-1, 0, +1} and `shift` >= 0; activations are fixed point (Q16.16, floor) int32; `>>` is an arithmetic shift.
Binary codes are the signs of a vector, +1 where the value is >= 0, packed 64 per uint64 word (bit set = +1).
"""

from __future__ import annotations

import numpy as np

#: Fractional bits of the fixed-point activations (Q16.16).
FRACTION_BITS = 16


def to_fixed_point(x: np.ndarray, fraction_bits: int = FRACTION_BITS) -> np.ndarray:
    """Float activations as int32 fixed point, rounded down (floor), as ShiftAddViT's kernels expect."""
    return np.floor(np.asarray(x, dtype=np.float64) * (1 << fraction_bits)).astype(np.int32)


def shift_linear_reference(x_int: np.ndarray, sign: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """`Y[i, j] = sum_k sign[j, k] * (x_int[i, k] >> shift[j, k])`, exact in int64."""
    shifted = np.right_shift(x_int.astype(np.int64)[:, None, :], shift.astype(np.int64)[None, :, :])
    return (shifted * sign.astype(np.int64)[None, :, :]).sum(axis=-1)


def pack_codes(x: np.ndarray) -> np.ndarray:
    """Binary codes of the last axis (+1 where x >= 0) packed into uint64 words, least significant bit first."""
    bits = np.asarray(x) >= 0
    words = -(-bits.shape[-1] // 64)
    padded = np.zeros((*bits.shape[:-1], words * 64), dtype=np.uint64)
    padded[..., :bits.shape[-1]] = bits
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return (padded.reshape(*bits.shape[:-1], words, 64) * weights).sum(axis=-1, dtype=np.uint64)


def hamming_scores_reference(q_codes: np.ndarray, k_codes: np.ndarray, bits: int) -> np.ndarray:
    """Dot products of {-1,+1} codes from packed words: `bits - 2 * popcount(q XOR k)`, shape [..., Nq, Nk]."""
    xor = np.bitwise_xor(q_codes[..., :, None, :], k_codes[..., None, :, :])
    popcount = np.unpackbits(xor.view(np.uint8), axis=-1).sum(axis=-1, dtype=np.int64)
    return bits - 2 * popcount


def sign_matmul_reference(signs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`signs @ x` for a {-1, 0, +1} matrix (only additions and subtractions): exact int64 for integer `x`."""
    dtype = np.int64 if np.issubdtype(np.asarray(x).dtype, np.integer) else np.float64
    return np.asarray(signs, dtype=dtype) @ np.asarray(x, dtype=dtype)
