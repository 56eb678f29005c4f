"""The hybrid small-LM's blocks in pure PyTorch, each with a full-sequence path and a cached decode path.

Every block maps `(x, state) -> (y, new_state)`: `x` is (batch, time, width), `state` is None for an empty
context or what the previous call returned. States are never changed in place, so one cached context can be
decoded from repeatedly (that is how TPOT is timed). Attention caches keys and values (sliding-window attention
keeps only the last `window`); the gated delta-rule and Mamba-style blocks keep a fixed-size recurrent state and
the last inputs of their short causal convolution. Multi-token inputs run the chunked (parallel) form of the
recurrences; single tokens run the recurrence itself, so tests comparing the two check both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: tokens per chunk of the chunked delta-rule and state-space scans
CHUNK = 32
#: kernel size of the short causal convolutions (as in Mamba and Gated DeltaNet)
CONV_KERNEL = 4
#: state size per head of the Mamba-style block
SSM_STATE = 16
#: inner width of the Mamba-style block over the model width
SSM_EXPAND = 2


def _rope(x: torch.Tensor, start: int) -> torch.Tensor:
    """Rotary position embedding of (batch, heads, time, dim) `x` whose first position is `start`."""
    half = x.shape[-1] // 2
    freq = 10000.0 ** (-torch.arange(half, dtype=x.dtype) / half)
    angle = torch.arange(start, start + x.shape[-2], dtype=x.dtype)[:, None] * freq
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Causal multi-head attention with RoPE and a KV cache; `window` > 0 makes it sliding-window attention."""

    def __init__(self, width: int, heads: int, window: int = 0) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, dict]:
        batch, time, width = x.shape
        start = state["pos"] if state else 0
        q, k, v = self.qkv(x).view(batch, time, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = _rope(q, start), _rope(k, start)
        if state:
            k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        past = k.shape[2] - time
        if time == 1 and not self.window:
            y = F.scaled_dot_product_attention(q, k, v)
        elif time == 1:
            y = F.scaled_dot_product_attention(q, k[:, :, -self.window:], v[:, :, -self.window:])
        else:
            query = torch.arange(past, past + time)[:, None]
            key = torch.arange(past + time)[None, :]
            mask = (key <= query) & ((query - key < self.window) if self.window else True)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if self.window:
            k, v = k[:, :, -self.window:], v[:, :, -self.window:]
        y = self.out(y.transpose(1, 2).reshape(batch, time, width))
        return y, {"k": k, "v": v, "pos": start + time}


class CausalConv(nn.Module):
    """Depthwise causal convolution over time whose state is the last `CONV_KERNEL - 1` inputs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, CONV_KERNEL, groups=channels)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.transpose(1, 2)
        if past is None:
            past = x.new_zeros(x.shape[0], x.shape[1], CONV_KERNEL - 1)
        full = torch.cat([past, x], dim=2)
        y = F.silu(self.conv(full)).transpose(1, 2)
        return y, full[:, :, -(CONV_KERNEL - 1):]


def _chunks(x: torch.Tensor, size: int) -> torch.Tensor:
    """(batch, heads, time, ...) padded with zeros to whole chunks, as (batch, heads, chunks, size, ...)."""
    pad = -x.shape[2] % size
    if pad:
        x = torch.cat([x, x.new_zeros(*x.shape[:2], pad, *x.shape[3:])], dim=2)
    return x.view(*x.shape[:2], -1, size, *x.shape[3:])


def delta_rule_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                       state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated delta rule S_t = a_t (I - b_t k_t k_t') S_{t-1} + b_t k_t v_t', o_t = S_t' q_t, in chunks (WY form).

    q, k: (batch, heads, time, dk); v: (batch, heads, time, dv); g = log a_t and beta: (batch, heads, time);
    state: (batch, heads, dk, dv). Padding tokens get g = 0 and beta = 0, so they leave the state unchanged.
    Returns o (batch, heads, time, dv) and the final state.
    """
    time = q.shape[2]
    q, k, v, g, beta = (_chunks(t, CHUNK) for t in (q, k, v, g, beta))
    decay = g.cumsum(-1)  # log of the product of gates from the chunk start, inclusive
    gap = decay[..., :, None] - decay[..., None, :]
    lower = torch.ones(CHUNK, CHUNK, dtype=torch.bool).tril()
    factor = torch.where(lower, gap, -math.inf).exp()  # a_{s+1..t} for s <= t
    k_beta = k * beta[..., None]
    strict = (k_beta @ k.transpose(-1, -2) * factor).tril(-1)
    eye = torch.eye(CHUNK, dtype=q.dtype)
    inverse = torch.linalg.solve_triangular(eye + strict, eye.expand_as(strict), upper=False, unitriangular=True)
    u = inverse @ (v * beta[..., None])
    w = inverse @ (k_beta * decay.exp()[..., None])
    outputs = []
    for i in range(q.shape[2]):
        q_i, k_i = q[:, :, i], k[:, :, i]
        new = u[:, :, i] - w[:, :, i] @ state
        scores = q_i @ k_i.transpose(-1, -2) * factor[:, :, i]
        outputs.append((q_i * decay[:, :, i, :, None].exp()) @ state + scores @ new)
        last = decay[:, :, i, -1]
        state = state * last[..., None, None].exp() + (
            k_i * (last[..., None] - decay[:, :, i]).exp()[..., None]).transpose(-1, -2) @ new
    return torch.cat(outputs, dim=2)[:, :, :time], state


def delta_rule_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                    state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the gated delta rule (shapes as `delta_rule_chunked` with time 1), as the plain recurrence."""
    q, k, v, g, beta = q[:, :, 0], k[:, :, 0], v[:, :, 0], g[:, :, 0], beta[:, :, 0]
    state = state * g.exp()[..., None, None]
    correction = (v - torch.einsum("bhkv,bhk->bhv", state, k)) * beta[..., None]
    state = state + k[..., :, None] * correction[..., None, :]
    return torch.einsum("bhkv,bhk->bhv", state, q)[:, :, None], state


def _delta_rule(q, k, v, g, beta, state) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence for one token, the chunked form for several."""
    return (delta_rule_step if q.shape[2] == 1 else delta_rule_chunked)(q, k, v, g, beta, state)


class GatedDeltaNet(nn.Module):
    """Gated DeltaNet token mixer (Yang et al. 2025): short convs on q, k, v, L2-normed keys, gated output."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.conv = CausalConv(3 * width)
        self.gates = nn.Linear(width, 2 * heads)  # decay a_t and write strength beta_t per head
        self.log_rate = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, heads)))
        self.output_gate = nn.Linear(width, width, bias=False)
        self.norm = nn.RMSNorm(width // heads)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, dict]:
        batch, time, width = x.shape
        mixed, conv = self.conv(self.qkv(x), state["conv"] if state else None)
        q, k, v = mixed.view(batch, time, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q = F.normalize(q, dim=-1) / math.sqrt(q.shape[-1])
        k = F.normalize(k, dim=-1)
        rate, write = self.gates(x).transpose(1, 2).chunk(2, dim=1)
        g = -self.log_rate.exp()[:, None] * F.softplus(rate - 4.0)  # log decay, near 0 at init
        recurrent = state["ssm"] if state else x.new_zeros(batch, self.heads, k.shape[-1], v.shape[-1])
        y, recurrent = _delta_rule(q, k, v, g, torch.sigmoid(write), recurrent)
        y = self.norm(y.transpose(1, 2)).reshape(batch, time, width) * F.silu(self.output_gate(x))
        return self.out(y), {"conv": conv, "ssm": recurrent}


def scan_chunked(c: torch.Tensor, b: torch.Tensor, x: torch.Tensor, g: torch.Tensor,
                 state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan h_t = a_t h_{t-1} + b_t x_t', y_t = h_t' c_t with scalar a_t = exp(g_t) per head, in chunks.

    The Mamba-2 (SSD) form: within a chunk a masked, decay-weighted attention; across chunks the state.
    c, b: (batch, heads, time, n); x: (batch, heads, time, p); g: (batch, heads, time); state: (batch, heads, n, p).
    """
    time = c.shape[2]
    c, b, x, g = (_chunks(t, CHUNK) for t in (c, b, x, g))
    decay = g.cumsum(-1)
    lower = torch.ones(CHUNK, CHUNK, dtype=torch.bool).tril()
    factor = torch.where(lower, decay[..., :, None] - decay[..., None, :], -math.inf).exp()
    outputs = []
    for i in range(c.shape[2]):
        c_i, b_i, x_i = c[:, :, i], b[:, :, i], x[:, :, i]
        outputs.append((c_i * decay[:, :, i, :, None].exp()) @ state + (c_i @ b_i.transpose(-1, -2) * factor[:, :, i]) @ x_i)
        last = decay[:, :, i, -1]
        state = state * last[..., None, None].exp() + (
            b_i * (last[..., None] - decay[:, :, i]).exp()[..., None]).transpose(-1, -2) @ x_i
    return torch.cat(outputs, dim=2)[:, :, :time], state


def scan_step(c: torch.Tensor, b: torch.Tensor, x: torch.Tensor, g: torch.Tensor,
              state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of the selective scan (shapes as `scan_chunked` with time 1), as the plain recurrence."""
    c, b, x, g = c[:, :, 0], b[:, :, 0], x[:, :, 0], g[:, :, 0]
    state = state * g.exp()[..., None, None] + b[..., :, None] * x[..., None, :]
    return torch.einsum("bhnp,bhn->bhp", state, c)[:, :, None], state


class Mamba(nn.Module):
    """Mamba-2-style selective state-space mixer: input-dependent step, B and C; scalar decay per head."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.inner = heads, SSM_EXPAND * width
        self.proj = nn.Linear(width, 2 * self.inner + 2 * SSM_STATE + heads, bias=False)
        self.conv = CausalConv(self.inner + 2 * SSM_STATE)
        self.step_bias = nn.Parameter(torch.log(torch.expm1(torch.logspace(-3, -1, heads))))
        self.log_rate = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, heads)))
        self.skip = nn.Parameter(torch.ones(heads))
        self.norm = nn.RMSNorm(self.inner)
        self.out = nn.Linear(self.inner, width, bias=False)

    def forward(self, x: torch.Tensor, state: dict | None) -> tuple[torch.Tensor, dict]:
        batch, time, _ = x.shape
        gate, xbc, step = self.proj(x).split([self.inner, self.inner + 2 * SSM_STATE, self.heads], dim=-1)
        xbc, conv = self.conv(xbc, state["conv"] if state else None)
        inputs, b, c = xbc.split([self.inner, SSM_STATE, SSM_STATE], dim=-1)
        step = F.softplus(step + self.step_bias).transpose(1, 2)  # (batch, heads, time)
        heads_x = inputs.view(batch, time, self.heads, -1).transpose(1, 2)
        b = b[:, None].expand(-1, self.heads, -1, -1)
        c = c[:, None].expand(-1, self.heads, -1, -1)
        recurrent = state["ssm"] if state else x.new_zeros(batch, self.heads, SSM_STATE, heads_x.shape[-1])
        scan = scan_step if time == 1 else scan_chunked
        y, recurrent = scan(c, b, heads_x * step[..., None], -self.log_rate.exp()[:, None] * step, recurrent)
        y = y + heads_x * self.skip[:, None, None]
        y = self.norm(y.transpose(1, 2).reshape(batch, time, self.inner)) * F.silu(gate)
        return self.out(y), {"conv": conv, "ssm": recurrent}


class FeedForward(nn.Module):
    """SwiGLU feed-forward block with hidden width `ratio` x width; stateless."""

    def __init__(self, width: int, ratio: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, 2 * ratio * width, bias=False)
        self.down = nn.Linear(ratio * width, width, bias=False)

    def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
        gate, up = self.up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up), None


class Residual(nn.Module):
    """Pre-norm residual wrapper: x + block(norm(x))."""

    def __init__(self, width: int, block: nn.Module) -> None:
        super().__init__()
        self.norm, self.block = nn.RMSNorm(width), block

    def forward(self, x: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        y, state = self.block(self.norm(x), state)
        return x + y, state


class HybridLM(nn.Module):
    """Byte-level causal LM: embedding, residual blocks, final norm, output head tied to the embedding.

    `forward(tokens)` gives the logits of every position; `prefill(tokens)` also returns the cache, and
    `step(token, cache)` decodes one more token per sequence without changing `cache`.
    """

    def __init__(self, blocks: list[nn.Module], width: int, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        nn.init.normal_(self.embed.weight, std=width ** -0.5)
        self.blocks = nn.ModuleList(Residual(width, block) for block in blocks)
        self.norm = nn.RMSNorm(width)

    def _run(self, tokens: torch.Tensor, cache: list | None, last_only: bool = False) -> tuple[torch.Tensor, list]:
        x = self.embed(tokens)
        states = []
        for i, block in enumerate(self.blocks):
            x, state = block(x, cache[i] if cache else None)
            states.append(state)
        if last_only:
            x = x[:, -1:]
        return self.norm(x) @ self.embed.weight.T, states

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run(tokens, None)[0]

    def prefill(self, tokens: torch.Tensor, cache: list | None = None,
                last_only: bool = False) -> tuple[torch.Tensor, list]:
        """Logits of (batch, time) `tokens` following `cache` (only the last position's if `last_only`), and the
        extended cache."""
        return self._run(tokens, cache, last_only)

    def step(self, token: torch.Tensor, cache: list) -> tuple[torch.Tensor, list]:
        """Logits (batch, vocab) of the next position after (batch,) `token`, and the new cache."""
        logits, cache = self._run(token[:, None], cache)
        return logits[:, 0], cache
