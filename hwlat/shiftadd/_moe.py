"""Top-1 mixture of MLP experts {dense, shift} with ShiftAddViT's latency-aware load-balancing loss.

Router: noisy top-1 gating (Shazeer et al. 2017, "Outrageously large neural networks"): clean logits
`x W_g`, training adds Gaussian noise of std `softplus(x W_noise)`; every token goes to its arg-max expert.
The chosen expert's output is multiplied by `p / stop_gradient(p)` (p its softmax probability): the value is
the expert's output unchanged (a reparameterized MoE starts as exactly its experts), the gradient reaches
the router as in Switch-style `p * expert(x)` gating. ShiftAddViT's released default path uses a constant
top-1 gate of 1 and sets the balance term to 0, so its router learns nothing; this is the correction.

Latency-aware balance loss, as coded in ShiftAddViT (GATECH-EIC/ShiftAddViT, `pvt/fmoe_new.py`,
`NoisyGate.forward`, which multiplies both vectors by [6, 4] for [mult, shift]), with `a_e` the relative
latency of expert e:

    Importance_e = a_e * sum_x softmax(noisy logits(x))_e
    Load_e       = a_e * sum_x P(e is the top-1 of the noisy logits of x)    (Shazeer's smooth load)
    L_balance    = CV2(Importance) + CV2(Load),   CV2(v) = var(v) / mean(v)**2   (unbiased var, as theirs)

Their Importance sums the top-1 gates, which are the constant 1 there; here it sums the router's softmax
probabilities so that it has a gradient. The loss is zero when `a_e * tokens_e` is equal across experts,
so an expert twice as fast is sent twice the tokens (with a = [6, 4], 60 % of the tokens go to shift).
ShiftAddViT adds it with weight 0.01 to the task loss. The balance holds for the noisy training-time
routing; evaluation routes by the clean logits, and `fractions()` reports what it did.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hwlat._errors import HwlatError

#: ShiftAddViT's relative latencies of the [dense (multiplication), shift] experts.
PAPER_LATENCY = (6.0, 4.0)
#: ShiftAddViT's weight of the balance loss on top of the task loss.
BALANCE_WEIGHT = 0.01


def cv_squared(values: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation `var / mean**2` (0 for equal values)."""
    return values.var() / (values.mean() ** 2 + 1e-10)


def top1_load(clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor) -> torch.Tensor:
    """P(expert e wins the noisy top-1) per token: `Phi((clean_e - max_{j != e} noisy_j) / std_e)`, [T, E]."""
    experts = clean.shape[-1]
    others = noisy.unsqueeze(-2).expand(*noisy.shape[:-1], experts, experts)
    others = others.masked_fill(torch.eye(experts, dtype=torch.bool), float("-inf"))
    threshold = others.max(dim=-1).values
    return torch.distributions.Normal(0.0, 1.0).cdf((clean - threshold) / noise_std)


def balance_loss(probs: torch.Tensor, load: torch.Tensor, latency: torch.Tensor) -> torch.Tensor:
    """`CV2(a * sum probs) + CV2(a * sum load)` over the tokens of one batch ([T, E] inputs, [E] latency)."""
    return cv_squared(latency * probs.sum(dim=0)) + cv_squared(latency * load.sum(dim=0))


class MoEMlp(nn.Module):
    """Tokens routed top-1 to one of `experts` (modules dim -> dim); `balance_loss` holds the last batch's loss.

    `token_counts` accumulates how many tokens each expert received (reset with `reset_counts`), so the
    fraction of tokens per expert can be read after an evaluation.
    """

    def __init__(self, experts: Sequence[nn.Module], dim: int, latency: Sequence[float] = PAPER_LATENCY) -> None:
        super().__init__()
        if len(latency) != len(experts):
            raise HwlatError(f"moe: {len(experts)} experts but {len(latency)} latencies")
        self.experts = nn.ModuleList(experts)
        self.router = nn.Linear(dim, len(experts), bias=False)
        self.noise = nn.Linear(dim, len(experts), bias=False)
        self.reset_router()
        latency_tensor = torch.as_tensor(latency, dtype=torch.float32)
        self.register_buffer("latency", latency_tensor / latency_tensor.mean())
        self.register_buffer("token_counts", torch.zeros(len(experts), dtype=torch.int64), persistent=False)
        self.balance_loss = torch.zeros(())

    def reset_router(self) -> None:
        """`nn.Linear`'s default init for the router, zero noise weights (noise std softplus(0) = 0.69).

        Router logits that vary across tokens more than the noise make the clean (evaluation) routing
        follow the noisy training-time routing the balance loss sees; a small init leaves every token near
        the same logits, where the loss is met by a common offset and evaluation sends nearly all tokens
        to one expert.
        """
        self.router.reset_parameters()
        nn.init.zeros_(self.noise.weight)

    def reset_counts(self) -> None:
        self.token_counts.zero_()

    def fractions(self) -> torch.Tensor:
        """Fraction of the tokens counted so far that went to each expert."""
        return self.token_counts.double() / max(int(self.token_counts.sum()), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        clean = self.router(rows)
        logits = clean
        if self.training:
            noise_std = F.softplus(self.noise(rows)) + 1e-2
            logits = clean + torch.randn_like(clean) * noise_std
        probs = torch.softmax(logits, dim=-1)
        choice = logits.argmax(dim=-1)
        gate = probs.gather(1, choice[:, None])
        scale = gate / gate.detach()
        out = torch.zeros_like(rows)
        for index, expert in enumerate(self.experts):
            routed = (choice == index).nonzero().squeeze(1)
            if routed.numel():
                out = out.index_copy(0, routed, expert(rows[routed]) * scale[routed])
        self.token_counts += torch.bincount(choice, minlength=len(self.experts))
        self.balance_loss = (balance_loss(probs, top1_load(clean, logits, noise_std), self.latency)
                             if self.training else torch.zeros((), device=x.device))
        return out.reshape(x.shape)
