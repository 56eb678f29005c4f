"""A whole ShiftAdd ViT as one TVM Relax module: every operator a scheduled PrimFunc called with `call_tir`.

The module is what `_vit.VisionTransformer` computes for batch 1 (same weight names, same per-block choices):
image [C, H, W] -> logits [1, classes padded to the column tile]. Tokens are padded to the vector width. MoE
blocks route a fixed `moe_shift_fraction` of the real tokens to the shift expert and the rest to the dense
one; the router is computed (its cost counted) but the split is static, since latency depends on how many
tokens each expert gets, not which. Weights are constants of the module, random or from a trained model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hwlat._errors import HwlatError
from hwlat.shiftadd import _tvm_ops as ops
from hwlat.shiftadd._config import BlockChoice, ViTConfig
from hwlat.shiftadd._kernels import round_up, schedule_cpu, vector_lanes
from hwlat.shiftadd._reference import to_fixed_point

#: Parts a latency table measures on their own: the stem (patch embedding), one block, the head.
PARTS = ("stem", "block", "head")


def _linear_weights(rng, prefix: str, in_features: int, out_features: int, shift: bool) -> dict[str, np.ndarray]:
    bias = (rng.standard_normal(out_features) * 0.02).astype(np.float32)
    if shift:
        return {f"{prefix}.sign": rng.integers(-1, 2, (out_features, in_features), dtype=np.int8),
                f"{prefix}.shift": rng.integers(0, 15, (out_features, in_features), dtype=np.int8),
                f"{prefix}.bias": bias}
    weight = (rng.standard_normal((out_features, in_features)) * in_features ** -0.5).astype(np.float32)
    return {f"{prefix}.weight": weight, f"{prefix}.bias": bias}


def random_weights(config: ViTConfig, choices: Sequence[BlockChoice], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights of the right shapes under `_vit`'s names (latency does not depend on their values).

    Shift linears are given in exported form (`ShiftLinear.export`): int8 `sign` in {-1, 0, +1} and int8
    `shift` >= 0, [out, in], with a float bias.
    """
    rng = np.random.default_rng(seed)
    dim, hidden, features = config.dim, config.hidden, config.channels * config.patch_size ** 2
    weights = _linear_weights(rng, "patch", features, dim, False)
    weights["cls"] = (rng.standard_normal((1, 1, dim)) * 0.02).astype(np.float32)
    weights["pos"] = (rng.standard_normal((1, config.tokens, dim)) * 0.02).astype(np.float32)
    for i, choice in enumerate(choices):
        block = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            weights[f"{block}.{norm}.weight"] = np.ones(dim, np.float32)
            weights[f"{block}.{norm}.bias"] = np.zeros(dim, np.float32)
        weights.update(_linear_weights(rng, f"{block}.attn.qkv", dim, 3 * dim, False))
        weights.update(_linear_weights(rng, f"{block}.attn.proj", dim, dim, False))
        if choice.attention == "binary":
            weights[f"{block}.attn.temperature"] = np.full(config.heads, config.head_dim ** -0.5, np.float32)
        experts = {"dense": [("mlp", False)], "shift": [("mlp", True)],
                   "moe": [("mlp.experts.0", False), ("mlp.experts.1", True)]}[choice.mlp]
        for prefix, shift in experts:
            weights.update(_linear_weights(rng, f"{block}.{prefix}.fc1", dim, hidden, shift))
            weights.update(_linear_weights(rng, f"{block}.{prefix}.fc2", hidden, dim, shift))
        if choice.mlp == "moe":
            weights[f"{block}.mlp.router.weight"] = (rng.standard_normal((2, dim)) * 0.02).astype(np.float32)
    weights["norm.weight"], weights["norm.bias"] = np.ones(dim, np.float32), np.zeros(dim, np.float32)
    weights.update(_linear_weights(rng, "head", dim, config.num_classes, False))
    return weights


def weights_from_torch(model) -> dict[str, np.ndarray]:
    """The weights of a trained `_vit.VisionTransformer` in this module's form (shift layers exported)."""
    from hwlat.shiftadd._shift import ShiftLinear

    weights = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()
               if tensor.is_floating_point()}
    for name, module in model.named_modules():
        if isinstance(module, ShiftLinear):
            sign, shift, _ = module.export()
            weights[f"{name}.sign"], weights[f"{name}.shift"] = sign.numpy(), shift.numpy()
    return weights


def moe_split(tokens: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(token indices of the shift expert, of the dense expert): `round(fraction * tokens)` tokens to shift."""
    if not 0.0 <= fraction <= 1.0:
        raise HwlatError(f"shiftadd: moe_shift_fraction must be in [0, 1], got {fraction}")
    order = np.random.default_rng(seed).permutation(tokens).astype(np.int32)
    count = int(round(fraction * tokens))
    return np.sort(order[:count]), np.sort(order[count:])


@dataclass
class _Builder:
    """Emits the operators of a ViT into a Relax function; one PrimFunc per distinct operator shape."""

    config: ViTConfig
    weights: dict[str, np.ndarray]
    target: object
    moe_shift_fraction: float = 0.6
    shift_sign_op: str = "multiply"
    _functions: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from tvm import relax

        self.bb = relax.BlockBuilder()
        self.lanes = vector_lanes(self.target)
        self.padded = round_up(self.config.tokens, self.lanes)
        self.classes = round_up(self.config.num_classes, 2 * self.lanes)

    # ------------------------------------------------------------------------------------------ plumbing

    def _call(self, key: tuple, make: Callable, args: list, out_shape: tuple, rows: bool = False,
              out_dtype: str = "float32"):
        """Emit `call_tir` of the operator `make()` (scheduled, added once per `key`) on `args`."""
        from tvm import relax

        if key not in self._functions:
            func = make()
            if rows:
                func = ops.schedule_rows(func, self.target, self.lanes)
            else:
                func = schedule_cpu(func, self.target)
            name = "_".join(str(part) for part in key).replace("-", "_")
            self._functions[key] = self.bb.add_func(func.with_attr("global_symbol", name), name)
        return self.bb.emit(relax.call_tir(self._functions[key], args, relax.TensorType(out_shape, out_dtype)))

    def _const(self, array: np.ndarray):
        from tvm import relax

        return relax.const(np.ascontiguousarray(array))

    def _weight(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise HwlatError(f"shiftadd: weight {name!r} missing for this configuration and choice")
        return self.weights[name]

    # ------------------------------------------------------------------------------------------- layers

    def layer_norm(self, x, prefix: str, out_rows: int | None = None):
        rows = out_rows or self.padded
        return self._call(("layer_norm", self.padded, self.config.dim, rows),
                          lambda: ops.layer_norm(self.padded, self.config.dim, self.lanes, out_rows=out_rows),
                          [x, self._const(self._weight(f"{prefix}.weight")), self._const(self._weight(f"{prefix}.bias"))],
                          (rows, self.config.dim), rows=True)

    def linear(self, x, prefix: str, rows: int, in_features: int, out_features: int, *, activation="none",
               residual=None, gather=None, heads_input=None, pad_to: int | None = None):
        """A linear layer (dense or shift, from the weights present) with its fused epilogue."""
        gather_from = self.padded if gather is not None else None
        extra = [self._const(gather)] if gather is not None else []
        tail = [residual] if residual is not None else []
        options = dict(activation=activation, residual=residual is not None, gather_from=gather_from)
        if f"{prefix}.sign" in self.weights:
            sign = self._weight(f"{prefix}.sign").T
            shift = self._weight(f"{prefix}.shift").T
            bias = to_fixed_point(self._weight(f"{prefix}.bias"))
            key = ("shift_linear", rows, in_features, out_features, activation, residual is not None, gather_from)
            return self._call(key, lambda: ops.shift_linear(rows, in_features, out_features, sign_op=self.shift_sign_op,
                                                            **options),
                              [x, *extra, self._const(sign), self._const(shift), self._const(bias), *tail],
                              (rows, out_features))
        weight = self._weight(f"{prefix}.weight").T
        bias = self.weights.get(f"{prefix}.bias", np.zeros(weight.shape[1], np.float32))
        if pad_to is not None:
            weight = np.pad(weight, ((0, 0), (0, pad_to - weight.shape[1])))
            bias = np.pad(bias, (0, pad_to - bias.shape[0]))
            out_features = pad_to
        key = ("dense", rows, in_features, out_features, activation, residual is not None, gather_from,
               heads_input is not None)
        return self._call(key, lambda: ops.dense_linear(rows, in_features, out_features, heads_input=heads_input,
                                                        **options),
                          [x, *extra, self._const(weight), self._const(bias), *tail], (rows, out_features))

    def stem(self, image):
        c = self.config
        return self._call(("patch_embed", self.padded), lambda: ops.patch_embed(c, self.padded),
                          [image, self._const(self._weight("patch.weight").T), self._const(self._weight("patch.bias")),
                           self._const(self._weight("cls").reshape(c.dim)),
                           self._const(self._weight("pos").reshape(c.tokens, c.dim))], (self.padded, c.dim))

    def attention(self, x, prefix: str, kind: str):
        c, n = self.config, self.padded
        qkv = self.linear(x, f"{prefix}.qkv", n, c.dim, 3 * c.dim)
        if kind == "binary-linear":
            width = c.head_dim + self.lanes
            context = self._call(("linear_context", n), lambda: ops.linear_context(c, n, self.lanes), [qkv],
                                 (c.heads, c.head_dim + 1, width))
            mixed = self._call(("linear_mix", n), lambda: ops.linear_mix(c, n, self.lanes), [qkv, context],
                               (c.heads, n, width))
            return self._call(("linear_normalize", n), lambda: ops.linear_normalize(c, n, self.lanes), [mixed],
                              (c.heads, n, c.head_dim), rows=True)
        if kind == "binary":
            temperature = self._const(self._weight(f"{prefix}.temperature"))
            scores = self._call(("hamming_scores", n), lambda: ops.hamming_scores(c, n), [qkv, temperature],
                                (c.heads, n, n))
        else:
            scores = self._call(("softmax_scores", n), lambda: ops.softmax_scores(c, n), [qkv], (c.heads, n, n))
        probs = self._call(("softmax", n), lambda: ops.softmax(c, n, self.lanes), [scores], (c.heads, n, n),
                           rows=True)
        return self._call(("attention_values", n), lambda: ops.attention_values(c, n), [probs, qkv],
                          (c.heads, n, c.head_dim))

    def mlp(self, x, normed, prefix: str, kind: str):
        """The MLP of a block plus its residual: `x + mlp(normed)`."""
        c, n = self.config, self.padded
        if kind != "moe":
            hidden = self.linear(normed, f"{prefix}.fc1", n, c.dim, c.hidden, activation="gelu")
            return self.linear(hidden, f"{prefix}.fc2", n, c.hidden, c.dim, residual=x)
        self.linear(normed, f"{prefix}.router", n, c.dim, 2, pad_to=self.lanes)  # cost of routing (see module doc)
        to_shift, to_dense = moe_split(c.tokens, self.moe_shift_fraction)
        outputs = {}
        for name, tokens, expert in (("shift", to_shift, "experts.1"), ("dense", to_dense, "experts.0")):
            if len(tokens):
                hidden = self.linear(normed, f"{prefix}.{expert}.fc1", len(tokens), c.dim, c.hidden,
                                     activation="gelu", gather=tokens)
                outputs[name] = (self.linear(hidden, f"{prefix}.{expert}.fc2", len(tokens), c.hidden, c.dim),
                                 len(tokens))
        shift_out, shift_rows = outputs.get("shift", outputs.get("dense"))
        dense_out, dense_rows = outputs.get("dense", outputs.get("shift"))
        flags, pos_shift, pos_dense = (np.zeros(n, np.int32) for _ in range(3))
        flags[to_shift] = 1
        pos_shift[to_shift] = np.arange(len(to_shift))
        pos_dense[to_dense] = np.arange(len(to_dense))
        return self._call(("moe_combine", n, shift_rows, dense_rows),
                          lambda: ops.moe_combine(n, c.dim, shift_rows, dense_rows),
                          [x, shift_out, dense_out, self._const(flags), self._const(pos_shift),
                           self._const(pos_dense)], (n, c.dim), rows=True)

    def block(self, x, index: int, choice: BlockChoice):
        c, prefix = self.config, f"blocks.{index}"
        attended = self.attention(self.layer_norm(x, f"{prefix}.norm1"), f"{prefix}.attn", choice.attention)
        x = self.linear(attended, f"{prefix}.attn.proj", self.padded, c.dim, c.dim, residual=x,
                        heads_input=(c.heads, c.head_dim))
        return self.mlp(x, self.layer_norm(x, f"{prefix}.norm2"), f"{prefix}.mlp", choice.mlp)

    def head(self, x):
        c = self.config
        cls = self.layer_norm(x, "norm", out_rows=1)
        return self.linear(cls, "head", 1, c.dim, c.num_classes, pad_to=self.classes)

    # ------------------------------------------------------------------------------------------- module

    def module(self, input_shape: tuple[int, ...], body: Callable):
        from tvm import relax

        x = relax.Var("x", relax.TensorType(input_shape, "float32"))
        with self.bb.function("main", [x]):
            with self.bb.dataflow():
                out = self.bb.emit_output(body(x))
            self.bb.emit_func_output(out)
        return self.bb.get()


def check_choices(config: ViTConfig, choices: Sequence[BlockChoice]) -> tuple[BlockChoice, ...]:
    """`choices` as a tuple, with a one-line error unless there is one `BlockChoice` per block."""
    choices = tuple(choices)
    if len(choices) != config.depth or not all(isinstance(c, BlockChoice) for c in choices):
        raise HwlatError(f"shiftadd: need {config.depth} BlockChoice values (one per block), got {len(choices)}")
    return choices


def input_shape(mod) -> tuple[int, ...]:
    """Shape of the input of a module's "main" (an image for the model and stem, tokens for a block or head)."""
    return tuple(int(v) for v in mod["main"].params[0].ty.shape.values)


def image_shape(config: ViTConfig) -> tuple[int, int, int]:
    """The module's input: one image, channels first."""
    return (config.channels, config.image_size, config.image_size)


def vit_module(config: ViTConfig, choices: Sequence[BlockChoice], target, *, weights: dict | None = None,
               moe_shift_fraction: float = 0.6, shift_sign_op: str = "multiply"):
    """The whole ViT as a Relax IRModule: image [C, H, W] -> logits [1, classes padded]."""
    choices = check_choices(config, choices)
    weights = dict(weights) if weights is not None else random_weights(config, choices)
    builder = _Builder(config, weights, target, moe_shift_fraction, shift_sign_op)

    def body(x):
        x = builder.stem(x)
        for index, choice in enumerate(choices):
            x = builder.block(x, index, choice)
        return builder.head(x)

    return builder.module(image_shape(config), body)


def part_module(config: ViTConfig, part: str, target, *, choice: BlockChoice | None = None, copies: int = 1,
                weights: dict | None = None, moe_shift_fraction: float = 0.6, shift_sign_op: str = "multiply"):
    """One part of the ViT alone: "stem" (image -> tokens), `copies` blocks of `choice` in a row, each with
    its own weights (tokens -> tokens), or "head" (tokens -> logits); their latencies add up to the model's.

    Several copies make a block's weights leave the caches between calls as they do in the whole model.
    """
    if part not in PARTS:
        raise HwlatError(f"shiftadd: unknown part {part!r} (choose from {', '.join(PARTS)})")
    choice = choice or BlockChoice()
    weights = dict(weights) if weights is not None else random_weights(config, (choice,) * copies)
    builder = _Builder(config, weights, target, moe_shift_fraction, shift_sign_op)
    tokens = (builder.padded, config.dim)
    if part == "stem":
        return builder.module(image_shape(config), builder.stem)
    if part == "head":
        return builder.module(tokens, builder.head)

    def blocks(x):
        for index in range(copies):
            x = builder.block(x, index, choice)
        return x

    return builder.module(tokens, blocks)


def compile_module(mod, target):
    """Compile a module of scheduled `call_tir`s: the build-only Relax pipeline (no op fusion, which would
    replace the scheduled kernels by unscheduled fused ones)."""
    import tvm
    from tvm import relax

    from hwlat.shiftadd._kernels import PASS_CONFIG

    with tvm.transform.PassContext(config=PASS_CONFIG):
        return tvm.compile(mod, target=target, relax_pipeline=relax.get_pipeline("default_build"))


def run_module(executable, inputs: np.ndarray) -> np.ndarray:
    """Run a compiled module once on the CPU (for checks; `_tvm_latency` times it)."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(np.ascontiguousarray(inputs, dtype=np.float32), tvm.cpu())).numpy()
