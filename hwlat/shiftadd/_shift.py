"""Shift linear layers: weights `sign * 2**p`, activations in fixed point, trained with straight-through estimators.

Follows DeepShift-PS as ShiftAddViT uses it (`deepshift/modules.py`, `LinearShift`): the parameters are a
continuous exponent `p` and a continuous sign, rounded in the forward pass (`p` to an integer in
[-14, 0] for 5-bit weights, the sign to {-1, 0, +1}) with identity gradients; the sign receives the weight's
gradient unscaled, so small weights can still flip sign. Activations and bias are Q16.16 fixed point with
floor. The integer path `Y = sum_k sign * (x_int >> shift)` is exact and equals `_reference.shift_linear_reference`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from hwlat.shiftadd._reference import FRACTION_BITS

#: Exponent range of 5-bit shift weights (1 sign bit with zero, 4 bits of shift): 2**-14 ... 2**0.
SHIFT_RANGE = (-14, 0)
_INT32 = (-(2 ** 31), 2 ** 31 - 1)


class _RoundSTE(torch.autograd.Function):
    """Round to the nearest integer forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _FixedPointSTE(torch.autograd.Function):
    """Round down to a multiple of 2**-fraction_bits forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fraction_bits: int) -> torch.Tensor:
        scale = float(1 << fraction_bits)
        return torch.floor(x * scale) / scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _SignTimesMagnitude(torch.autograd.Function):
    """`sign * magnitude`; the sign's gradient is the product's gradient unscaled (DeepShift's unsym_grad_mul)."""

    @staticmethod
    def forward(ctx, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(sign)
        return magnitude * sign

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (sign,) = ctx.saved_tensors
        return grad * sign, grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """`round(x)` with the straight-through gradient 1."""
    return _RoundSTE.apply(x)


def fixed_point_ste(x: torch.Tensor, fraction_bits: int = FRACTION_BITS) -> torch.Tensor:
    """`floor(x * 2**f) / 2**f` (the value the Q16.16 kernels see) with the straight-through gradient 1."""
    return _FixedPointSTE.apply(x, fraction_bits)


def to_fixed_point(x: torch.Tensor, fraction_bits: int = FRACTION_BITS) -> torch.Tensor:
    """Float tensor as int64 fixed point (floor), saturated to the int32 range the kernels use."""
    scaled = torch.floor(x.double() * (1 << fraction_bits))
    return scaled.clamp(*_INT32).to(torch.int64)


def shift_linear_int(x_int: torch.Tensor, sign: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`Y[i, j] = sum_k sign[j, k] * (x_int[i, k] >> shift[j, k])` in exact integer arithmetic.

    Grouped by shift amount: each group is one arithmetic right shift of `x_int` and a {-1, 0, +1} matmul,
    done in float64, which is exact while |x_int| < 2**31 and in_features < 2**21.
    """
    out = torch.zeros(x_int.shape[0], sign.shape[0], dtype=torch.float64)
    for amount in torch.unique(shift).tolist():
        mask = (shift == amount).to(torch.float64) * sign.to(torch.float64)
        out += torch.bitwise_right_shift(x_int.to(torch.int64), int(amount)).to(torch.float64) @ mask.T
    return out.to(torch.int64)


class ShiftLinear(nn.Module):
    """`y = x_q @ (sign * 2**p)^T + b_q` with Q16.16 `x_q`, `b_q`; a drop-in for `nn.Linear`.

    Training uses the float surrogate (fixed-point activations times the power-of-two weight); with
    `integer=True` the forward runs the exact integer kernel (`shift_linear_int`), which floors every
    shifted term and so differs from the surrogate by at most `in_features` units of 2**-16 per output.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.shift = nn.Parameter(torch.empty(out_features, in_features).uniform_(*SHIFT_RANGE))
        self.sign = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1))
        bound = 1 / math.sqrt(in_features)
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound)) if bias else None
        self.integer = False

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> ShiftLinear:
        """The shift layer nearest a trained `nn.Linear`: `sign(w)` and `p = log2|w|` clipped to `SHIFT_RANGE`.

        `p` stays continuous; the forward rounds it, so |w| rounds up from 2**p at 2**(p + 0.5) (about
        1.414 * 2**p, rounding in the log domain), not at 1.5 * 2**p as rounding the value would.
        """
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            weight = linear.weight.detach()
            layer.sign.copy_(torch.sign(weight))
            layer.shift.copy_(torch.log2(weight.abs().clamp_min(2.0 ** (SHIFT_RANGE[0] - 1))).clamp(*SHIFT_RANGE))
            if layer.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def _rounded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ternary sign and integer exponent, both with straight-through gradients."""
        return round_ste(self.sign), round_ste(self.shift)

    def weight(self) -> torch.Tensor:
        """The effective weight `sign * 2**p` (differentiable through the estimators)."""
        sign, exponent = self._rounded()
        return _SignTimesMagnitude.apply(torch.pow(2.0, exponent), sign)  # pow, not exp2: exports to ONNX

    def export(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Integer tensors for a kernel: sign (int8, {-1, 0, +1}), shift = -p (int8, >= 0), Q16.16 bias (int64)."""
        with torch.no_grad():
            sign, exponent = self._rounded()
            bias = None if self.bias is None else to_fixed_point(self.bias)
            return sign.to(torch.int8), (-exponent).to(torch.int8), bias

    def integer_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The exact integer path: fixed-point input, shifted-and-added products, fixed-point bias, back to float."""
        sign, shift, bias = self.export()
        rows = x.reshape(-1, self.in_features)
        out = shift_linear_int(to_fixed_point(rows), sign, shift)
        if bias is not None:
            out = out + bias
        return (out.to(torch.float64) / (1 << FRACTION_BITS)).to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.integer:
            return self.integer_forward(x)
        if self.training:  # keep the parameters where rounding gives valid values (DeepShift clamps them alike)
            with torch.no_grad():
                self.shift.clamp_(*SHIFT_RANGE)
                self.sign.clamp_(-1, 1)
        bias = None if self.bias is None else fixed_point_ste(self.bias)
        return F.linear(fixed_point_ste(x), self.weight(), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
