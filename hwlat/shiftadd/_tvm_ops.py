"""Fused operators of a ShiftAdd ViT for TVM: the primitive kernels with their prologues and epilogues.

Matmul-like operators (linears, attention products) have an "acc" reduction and an "out" epilogue and take the
kernels' CPU schedule (`_kernels.schedule_cpu`); row-wise operators (LayerNorm, softmax, the linear attention's
normalisation) take `schedule_rows`. Activations are float32 [tokens, dim] with the token axis padded to the
vector width; padded rows hold finite values that never reach a real token (attention masks them as keys).
"""

from __future__ import annotations

import math

from hwlat.shiftadd._kernels import _extent, _spatial_loops, shift_term, vector_lanes
from hwlat.shiftadd._reference import FRACTION_BITS

LAYER_NORM_EPS = 1e-5
_INT32_MAX_FLOAT = 2147483520.0  # largest float32 below 2**31: the fixed-point conversion saturates there


def _te():
    from tvm import te

    return te


def lanes_dividing(extent: int, lanes: int) -> int:
    """The largest power of two <= `lanes` that divides `extent` (1 if `extent` is odd)."""
    while lanes > 1 and extent % lanes:
        lanes //= 2
    return lanes


# ------------------------------------------------------------------------------------------- epilogues


def gelu(te_tensor):
    """Exact-erf GELU of a TE tensor with TVM's vectorizable `fast_erf` (float32 error ~1e-7)."""
    from tvm import topi

    te = _te()
    scaled = te.compute(te_tensor.shape, lambda *i: te_tensor(*i) * (1 / math.sqrt(2)), name="gelu_in")
    erf = topi.fast_erf(scaled)
    return te.compute(te_tensor.shape, lambda *i: 0.5 * te_tensor(*i) * (1 + erf(*i)), name="gelu")


def _finish(pre, activation: str, residual, shape):
    """The "out" block: `pre` (+ GELU) (+ residual)."""
    te = _te()
    if activation == "gelu":
        pre = gelu(pre)
    if residual is not None:
        return te.compute(shape, lambda i, j: pre[i, j] + residual[i, j], name="out")
    return te.compute(shape, lambda i, j: pre[i, j], name="out")


# ---------------------------------------------------------------------------------------------- linears


def _rows_reader(x, gather):
    """Row access of a linear's input: `x[i, k]`, through an index (`x[idx[i], k]`), or from heads layout."""
    if gather is not None:
        return lambda i, k: x[gather[i], k]
    if len(x.shape) == 3:  # [heads, tokens, head_dim] -> [tokens, heads * head_dim]
        head_dim = int(x.shape[2])
        return lambda i, k: x[k // head_dim, i, k % head_dim]
    return lambda i, k: x[i, k]


def dense_linear(rows: int, in_features: int, out_features: int, *, activation: str = "none",
                 residual: bool = False, gather_from: int | None = None, heads_input: tuple[int, int] | None = None):
    """`act(x @ W + b) (+ r)` in float32, W [in, out]. `gather_from=n`: rows are `x[idx]` of an [n, in] input;
    `heads_input=(heads, head_dim)`: x is [heads, rows, head_dim] (the attention output, merged on the fly)."""
    te = _te()
    x, index = _linear_input(rows, in_features, gather_from, heads_input)
    w = te.placeholder((in_features, out_features), "float32", name="w")
    b = te.placeholder((out_features,), "float32", name="b")
    read = _rows_reader(x, index)
    k = te.reduce_axis((0, in_features), name="k")
    acc = te.compute((rows, out_features), lambda i, j: te.sum(read(i, k) * w[k, j], axis=k), name="acc")
    pre = te.compute((rows, out_features), lambda i, j: acc[i, j] + b[j], name="bias")
    r = te.placeholder((rows, out_features), "float32", name="r") if residual else None
    out = _finish(pre, activation, r, (rows, out_features))
    inputs = [x] + ([index] if index is not None else []) + [w, b] + ([r] if residual else [])
    return te.create_prim_func([*inputs, out])


def shift_linear(rows: int, in_features: int, out_features: int, *, activation: str = "none",
                 residual: bool = False, gather_from: int | None = None, sign_op: str = "multiply"):
    """ShiftLinear on float activations: Q16.16 floor (saturated) -> `sum sign * (x >> shift)` -> + Q16.16 bias
    -> float, as `ShiftLinear.integer_forward`; then GELU / residual. sign, shift int8 [in, out], bias int32."""
    te = _te()
    x, index = _linear_input(rows, in_features, gather_from, None)
    sign = te.placeholder((in_features, out_features), "int8", name="sign")
    shift = te.placeholder((in_features, out_features), "int8", name="shift")
    bias = te.placeholder((out_features,), "int32", name="bias_q")
    read = _rows_reader(x, index)
    scale = float(1 << FRACTION_BITS)
    from tvm import tirx

    def fixed(i, k):
        scaled = tirx.floor(read(i, k) * scale)
        return tirx.max(tirx.min(scaled, _INT32_MAX_FLOAT), -2147483648.0).astype("int32")

    xq = te.compute((rows, in_features), fixed, name="quantize")
    k = te.reduce_axis((0, in_features), name="k")
    acc = te.compute((rows, out_features),
                     lambda i, j: te.sum(shift_term(xq[i, k], sign[k, j], shift[k, j], sign_op), axis=k), name="acc")
    pre = te.compute((rows, out_features),
                     lambda i, j: (acc[i, j] + bias[j].astype("uint32")).astype("int32").astype("float32")
                     * (1 / scale), name="dequantize")
    r = te.placeholder((rows, out_features), "float32", name="r") if residual else None
    out = _finish(pre, activation, r, (rows, out_features))
    inputs = [x] + ([index] if index is not None else []) + [sign, shift, bias] + ([r] if residual else [])
    return te.create_prim_func([*inputs, out])


def _linear_input(rows, in_features, gather_from, heads_input):
    te = _te()
    if heads_input is not None:
        heads, head_dim = heads_input
        return te.placeholder((heads, rows, head_dim), "float32", name="x"), None
    if gather_from is not None:
        return (te.placeholder((gather_from, in_features), "float32", name="x"),
                te.placeholder((rows,), "int32", name="idx"))
    return te.placeholder((rows, in_features), "float32", name="x"), None


def patch_embed(config, padded: int):
    """Patch embedding as a matmul over gathered pixels, with the class token, positions and zero padding rows:
    image [C, H, W] -> x [padded, dim]. Row t >= 1 is patch t - 1 (the conv-as-linear of `_vit.patches`)."""
    from tvm import tirx

    te = _te()
    p, grid, dim = config.patch_size, config.image_size // config.patch_size, config.dim
    patches, features = grid * grid, config.channels * p * p
    image = te.placeholder((config.channels, config.image_size, config.image_size), "float32", name="image")
    w = te.placeholder((features, dim), "float32", name="w")
    b = te.placeholder((dim,), "float32", name="b")
    cls = te.placeholder((dim,), "float32", name="cls")
    pos = te.placeholder((config.tokens, dim), "float32", name="pos")

    def pixel(t, k):
        patch = tirx.max(t - 1, 0)
        value = image[k // (p * p), patch // grid * p + k // p % p, patch % grid * p + k % p]
        return tirx.Select(tirx.all(t >= 1, t <= patches), value, tirx.const(0.0, "float32"))

    rows = te.compute((padded, features), pixel, name="patches")  # gathered once, then a plain matmul
    k = te.reduce_axis((0, features), name="k")
    acc = te.compute((padded, dim), lambda t, j: te.sum(rows[t, k] * w[k, j], axis=k), name="acc")

    def assemble(t, j):
        row = tirx.min(t, config.tokens - 1)
        embedded = tirx.Select(t == 0, cls[j], acc[t, j] + b[j]) + pos[row, j]
        return tirx.Select(t < config.tokens, embedded, tirx.const(0.0, "float32"))

    out = te.compute((padded, dim), assemble, name="out")
    return te.create_prim_func([image, w, b, cls, pos, out])


# -------------------------------------------------------------------------------------------- attention


def _qkv_reader(qkv, dim, head_dim):
    """Q, K, V element readers of the [tokens, 3 * dim] projection: part(h, token, e)."""
    return [lambda h, t, e, o=offset: qkv[t, o + h * head_dim + e] for offset in (0, dim, 2 * dim)]


def softmax_scores(config, padded: int):
    """`S[h, i, j] = Q_i . K_j / sqrt(d)` from qkv [padded, 3 dim]; K is transposed first (contiguous keys)."""
    te = _te()
    heads, d, dim = config.heads, config.head_dim, config.dim
    qkv = te.placeholder((padded, 3 * dim), "float32", name="qkv")
    q, key, _ = _qkv_reader(qkv, dim, d)
    kt = te.compute((heads, d, padded), lambda h, e, j: key(h, j, e), name="keys_t")
    e = te.reduce_axis((0, d), name="e")
    acc = te.compute((heads, padded, padded), lambda h, i, j: te.sum(q(h, i, e) * kt[h, e, j], axis=e), name="acc")
    out = te.compute((heads, padded, padded), lambda h, i, j: acc[h, i, j] * (d ** -0.5), name="out")
    return te.create_prim_func([qkv, out])


def hamming_scores(config, padded: int):
    """`S[h, i, j] = t_h * (d - 2 popcount(q_i XOR k_j))` over sign codes of Q and K packed 64 per uint64."""
    from tvm import tirx

    te = _te()
    heads, d, dim = config.heads, config.head_dim, config.dim
    words = -(-d // 64)
    qkv = te.placeholder((padded, 3 * dim), "float32", name="qkv")
    temperature = te.placeholder((heads,), "float32", name="temperature")
    q, key, _ = _qkv_reader(qkv, dim, d)

    def pack(read):
        def word(h, t, w):
            bit = te.reduce_axis((0, 64), name="bit")
            e = tirx.min(w * 64 + bit, d - 1)
            on = tirx.all(w * 64 + bit < d, read(h, t, e) >= 0)
            one = tirx.const(1, "uint64")
            return te.sum(tirx.Select(on, one << bit.var.astype("uint64"), tirx.const(0, "uint64")), axis=bit)
        return word

    q_codes = te.compute((heads, padded, words), pack(q), name="q_codes")
    k_word = pack(key)
    k_codes = te.compute((heads, words, padded), lambda h, w, j: k_word(h, j, w), name="k_codes")
    w = te.reduce_axis((0, words), name="w")
    acc = te.compute((heads, padded, padded),
                     lambda h, i, j: te.sum(tirx.popcount(q_codes[h, i, w] ^ k_codes[h, w, j]).astype("int32"),
                                            axis=w), name="acc")
    out = te.compute((heads, padded, padded),
                     lambda h, i, j: (d - 2 * acc[h, i, j]).astype("float32") * temperature[h], name="out")
    return te.create_prim_func([qkv, temperature, out])


def attention_values(config, padded: int):
    """`O[h, i, :] = sum_j P[h, i, j] V_j` over the real keys: P [heads, padded, padded] -> O [heads, padded, d]."""
    te = _te()
    heads, d, dim = config.heads, config.head_dim, config.dim
    probs = te.placeholder((heads, padded, padded), "float32", name="probs")
    qkv = te.placeholder((padded, 3 * dim), "float32", name="qkv")
    _, _, value = _qkv_reader(qkv, dim, d)
    j = te.reduce_axis((0, config.tokens), name="j")
    acc = te.compute((heads, padded, d), lambda h, i, e: te.sum(probs[h, i, j] * value(h, j, e), axis=j), name="acc")
    out = te.compute((heads, padded, d), lambda h, i, e: acc[h, i, e], name="out")
    return te.create_prim_func([probs, qkv, out])


def linear_context(config, padded: int, lanes: int):
    """Binary linear attention, first half: `C = [K_b | 1]^T [V | 1 | 0]` over the real tokens, additions only.

    C [heads, d + 1, d + lanes]: rows < d hold K_b^T V (column d: K_b^T 1), row d holds the column sums of V
    (column d: the token count); everything the kernel-normalised output needs.
    """
    from tvm import tirx

    te = _te()
    heads, d, dim = config.heads, config.head_dim, config.dim
    qkv = te.placeholder((padded, 3 * dim), "float32", name="qkv")
    _, key, value = _qkv_reader(qkv, dim, d)
    zero, one = tirx.const(0.0, "float32"), tirx.const(1.0, "float32")
    values = te.compute((heads, config.tokens, d + lanes),
                        lambda h, n, e: tirx.Select(e < d, value(h, n, tirx.min(e, d - 1)),
                                                    tirx.Select(e == d, one, zero)), name="values_aug")
    n = te.reduce_axis((0, config.tokens), name="n")

    def term(h, r, e):
        v = values[h, n, e]
        signed = tirx.Select(key(h, n, tirx.min(r, d - 1)) >= 0, v, -v)
        return tirx.Select(r == d, v, signed)

    acc = te.compute((heads, d + 1, d + lanes), lambda h, r, e: te.sum(term(h, r, e), axis=n), name="acc")
    out = te.compute((heads, d + 1, d + lanes), lambda h, r, e: acc[h, r, e], name="out")
    return te.create_prim_func([qkv, out])


def linear_mix(config, padded: int, lanes: int):
    """Binary linear attention, second half: `M = 0.5 colsum + Q_b C / (2 d)`, [heads, padded, d + lanes];
    column d is the kernel sum that `linear_normalize` divides by."""
    from tvm import tirx

    te = _te()
    heads, d, dim = config.heads, config.head_dim, config.dim
    qkv = te.placeholder((padded, 3 * dim), "float32", name="qkv")
    context = te.placeholder((heads, d + 1, d + lanes), "float32", name="context")
    q, _, _ = _qkv_reader(qkv, dim, d)
    r = te.reduce_axis((0, d), name="r")

    def term(h, i, e):
        c = context[h, r, e]
        return tirx.Select(q(h, i, r) >= 0, c, -c)

    acc = te.compute((heads, padded, d + lanes), lambda h, i, e: te.sum(term(h, i, e), axis=r), name="acc")
    out = te.compute((heads, padded, d + lanes),
                     lambda h, i, e: 0.5 * context[h, d, e] + acc[h, i, e] * (1 / (2 * d)), name="out")
    return te.create_prim_func([qkv, context, out])


def linear_normalize(config, padded: int, lanes: int):
    """`O[h, i, e] = M[h, i, e] / max(M[h, i, d], 1e-6)`: the kernel-weighted mean of the values."""
    from tvm import tirx

    te = _te()
    heads, d = config.heads, config.head_dim
    mixed = te.placeholder((heads, padded, d + lanes), "float32", name="mixed")
    inverse = te.compute((heads, padded), lambda h, i: 1.0 / tirx.max(mixed[h, i, d], 1e-6), name="inverse")
    out = te.compute((heads, padded, d), lambda h, i, e: mixed[h, i, e] * inverse[h, i], name="out")
    return te.create_prim_func([mixed, out])


# ------------------------------------------------------------------------------------------ row-wise ops


def layer_norm(rows: int, dim: int, lanes: int, *, out_rows: int | None = None):
    """LayerNorm over the last axis (two-pass variance, as PyTorch) of the first `out_rows` rows (default all)."""
    from tvm import tirx

    te = _te()
    out_rows = out_rows or rows
    x = te.placeholder((rows, dim), "float32", name="x")
    gamma = te.placeholder((dim,), "float32", name="gamma")
    beta = te.placeholder((dim,), "float32", name="beta")
    lanes = lanes_dividing(dim, lanes)
    mean = _lane_sum(out_rows, dim, lanes, lambda t, c: x[t, c], "mean")
    centred = lambda t, c: x[t, c] - mean[t] * (1 / dim)  # noqa: E731
    var = _lane_sum(out_rows, dim, lanes, lambda t, c: centred(t, c) * centred(t, c), "var")
    out = te.compute((out_rows, dim), lambda t, c: centred(t, c) * tirx.rsqrt(var[t] * (1 / dim) + LAYER_NORM_EPS)
                     * gamma[c] + beta[c], name="out")
    return te.create_prim_func([x, gamma, beta, out])


def _lane_sum(rows: int, length: int, lanes: int, value, name: str, combine: str = "sum"):
    """Per-row reduction of `value(t, c)`, c < length, as `lanes` vector partials then their reduction."""
    te = _te()
    chunk = te.reduce_axis((0, length // lanes), name=f"{name}_chunk")
    reducer = te.sum if combine == "sum" else te.max
    partial = te.compute((rows, lanes), lambda t, l: reducer(value(t, chunk * lanes + l), axis=chunk),
                         name=f"{name}_partial")
    lane = te.reduce_axis((0, lanes), name=f"{name}_lane")
    return te.compute((rows,), lambda t: reducer(partial[t, lane], axis=lane), name=name)


def softmax(config, padded: int, lanes: int):
    """Row softmax over the real keys (padded keys get probability 0): scores [heads, padded, padded]."""
    from tvm import tirx, topi

    te = _te()
    heads, tokens = config.heads, config.tokens
    rows = heads * padded
    scores = te.placeholder((heads, padded, padded), "float32", name="scores")
    lanes = lanes_dividing(padded, lanes)
    low = tirx.const(-3.0e38, "float32")
    score = lambda r, j: scores[r // padded, r % padded, j]  # noqa: E731
    masked = lambda r, j: tirx.Select(j < tokens, score(r, j), low)  # noqa: E731
    top = _lane_sum(rows, padded, lanes, masked, "max", combine="max")
    shifted = te.compute((rows, padded), lambda r, j: tirx.max(masked(r, j) - top[r], -80.0), name="shifted")
    exp = topi.fast_exp(shifted)
    kept = te.compute((rows, padded), lambda r, j: tirx.Select(j < tokens, exp[r, j], tirx.const(0.0, "float32")),
                      name="exp")
    total = _lane_sum(rows, padded, lanes, lambda r, j: kept[r, j], "total")
    out = te.compute((heads, padded, padded),
                     lambda h, i, j: kept[h * padded + i, j] * (1.0 / total[h * padded + i]), name="out")
    return te.create_prim_func([scores, out])


def moe_combine(rows: int, dim: int, shift_rows: int, dense_rows: int):
    """`out[t] = x[t] + (y_shift[pos_s[t]] if to_shift[t] else y_dense[pos_d[t]])`: the experts' outputs back in
    token order, plus the residual."""
    from tvm import tirx

    te = _te()
    x = te.placeholder((rows, dim), "float32", name="x")
    y_shift = te.placeholder((shift_rows, dim), "float32", name="y_shift")
    y_dense = te.placeholder((dense_rows, dim), "float32", name="y_dense")
    to_shift = te.placeholder((rows,), "int32", name="to_shift")
    pos_s = te.placeholder((rows,), "int32", name="pos_shift")
    pos_d = te.placeholder((rows,), "int32", name="pos_dense")
    out = te.compute((rows, dim), lambda t, c: x[t, c] + tirx.Select(to_shift[t] > 0, y_shift[pos_s[t], c],
                                                                      y_dense[pos_d[t], c]), name="out")
    return te.create_prim_func([x, y_shift, y_dense, to_shift, pos_s, pos_d, out])


def schedule_rows(func, target, lanes: int | None = None):
    """CPU schedule of a row-wise operator: the leading axes of "out" fused and parallel, its last axis
    vectorized; every intermediate computed per row inside that loop (reductions as vector partials)."""
    from tvm import s_tir

    lanes = lanes or vector_lanes(target)
    sch = s_tir.Schedule(func)
    out = sch.get_sblock("out")
    *leading, last = _spatial_loops(sch, out)
    _, inner = sch.split(last, [None, lanes_dividing(_extent(sch, last), lanes)])
    sch.vectorize(inner)
    rows = sch.fuse(*leading) if len(leading) > 1 else leading[0]
    sch.parallel(rows)
    for block in reversed(sch.get_child_blocks(sch.get_sblock("root"))):
        name = sch.get(block).name_hint
        if name == "out":
            continue
        if _is_injective_stage(name):
            sch.compute_inline(block)
        else:
            sch.compute_at(block, rows)
            _vectorize_inner(sch, block, rows, lanes)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _is_injective_stage(name: str) -> bool:
    """TE stages worth recomputing rather than storing (shifts, `fast_exp`, reciprocals)."""
    return name in ("shifted", "inverse") or name.startswith("T_fast")


def _vectorize_inner(sch, block, rows, lanes: int) -> None:
    """After compute_at under `rows`: vectorize the block's innermost spatial loop, moved inside its
    reductions (TE nests spatial loops outside reduction loops)."""
    from tvm import tirx

    loops = list(sch.get_loops(block))
    own = loops[[sch.get(loop).same_as(sch.get(rows)) for loop in loops].index(True) + 1:]
    reductions = sum(int(v.iter_type) != tirx.IterVar.DataPar for v in sch.get(block).iter_vars)
    spatial, reduction = own[:len(own) - reductions], own[len(own) - reductions:]
    if not spatial:
        return
    last, extent = spatial[-1], _extent(sch, spatial[-1])
    width = lanes_dividing(extent, lanes)
    if width == 1:
        return
    if extent > width:
        _, last = sch.split(last, [None, width])
    if reduction:
        sch.reorder(*reduction, last)
    sch.vectorize(last)
    if reduction:
        sch.decompose_reduction(block, reduction[0])
