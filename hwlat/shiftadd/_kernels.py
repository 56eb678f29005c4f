"""TVM kernels of the ShiftAdd primitives: shift-linear, binary attention scores, sign (add/sub) matmuls.

Each kernel is a TE computation made a TIR PrimFunc (`te.create_prim_func`) with one reduction block "acc" and
one epilogue block "out", so a single hand schedule fits all of them: on CPUs register tiles of `row_tile` rows
by `col_tile` columns, columns vectorized, tiles run in parallel (`schedule_cpu`); on GPUs one thread per output
(`schedule_gpu`). MetaSchedule can tune the unscheduled PrimFunc instead (`tune`), keeping its records.

Vectorized axes (columns, i.e. output features or keys) must be multiples of the vector width: TVM turns a
vectorized loop that does not divide its axis into predicated scalar code, so callers pad token axes
(`round_up(197, 16) = 208`). Rows need no padding.

Integer kernels are exact. They accumulate in 32 bits with wrap-around (computed in uint32, where LLVM defines
the wrap; signed adds carry `nsw`), so an output is exact whenever its true value fits in int32, however large
the partial sums grow: for shift-linear in Q16.16 that is |y| < 32768; a sufficient condition is
`in_features * max|x_int| < 2**31`. The NumPy references (`_reference`) are exact in int64.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from hwlat._errors import HwlatError

#: How the {-1, 0, +1} sign is applied: an integer multiply, or selects of x / -x / 0 (additions only).
SIGN_OPS = ("multiply", "select")
#: Maximal GPU threads per block and shared memory the GPU schedule is checked against (any CUDA GPU since sm_20).
GPU_CONSTRAINTS = {"max_threads_per_block": 1024, "max_shared_memory_per_block": 48 * 1024,
                   "max_local_memory_per_block": 2 ** 31 - 1, "max_vthread": 1, "max_vector_bytes": 16}


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `value` (token counts padded to the vector width)."""
    return -(-value // multiple) * multiple


def vector_lanes(target, dtype: str = "float32") -> int:
    """Elements of `dtype` per SIMD register of a CPU target (16 float32 with AVX-512); 1 for GPU targets."""
    import tvm

    if target.kind.name != "llvm":
        return 1
    has = tvm.target.codegen.target_has_features
    bits = 512 if has("avx512f", target) else 256 if has("avx", target) else 128
    return bits // tvm.runtime.DataType(dtype).bits


# ---------------------------------------------------------------------------------------------- computations


def shift_term(x, sign, shift, sign_op: str):
    """`sign * (x >> shift)` as uint32 (wrapping), with the sign applied by `sign_op` (see `SIGN_OPS`)."""
    return signed_term(sign, (x >> shift.astype("int32")).astype("uint32"), sign_op)


def signed_term(sign, value, sign_op: str):
    """`sign * value` for a {-1, 0, +1} `sign`: a multiply, or selects of value / -value / 0 (no multiply)."""
    from tvm import tirx

    if sign_op == "multiply":
        dtype = _dtype(value)
        factor = sign.astype("int32").astype("uint32") if dtype == "uint32" else sign.astype(dtype)
        return value * factor
    zero = tirx.const(0, _dtype(value))
    return tirx.Select(sign > 0, value, tirx.Select(sign < 0, negate(value), zero))


def negate(value):
    """`-value`; for uint32 the two's complement `~value + 1`: TVM 0.27 folds `uint32(0) - x` to 0 (checked)."""
    from tvm import tirx

    if _dtype(value) == "uint32":
        return (value ^ tirx.const(0xFFFFFFFF, "uint32")) + tirx.const(1, "uint32")
    return -value


def _dtype(expr) -> str:
    """The data type of a TIR expression or TE tensor element ("float32", "uint32", ...)."""
    return str(expr.tensor.dtype) if hasattr(expr, "tensor") else str(expr.ty)


def _check_sign_op(sign_op: str) -> None:
    if sign_op not in SIGN_OPS:
        raise HwlatError(f"kernels: unknown sign_op {sign_op!r} (choose from {', '.join(SIGN_OPS)})")


def dense(rows: int, in_features: int, out_features: int, dtype: str = "float32"):
    """`Y = X @ W` with `X` [rows, in], `W` [in, out] (the transposed nn.Linear weight): the baseline kernel."""
    from tvm import te

    x = te.placeholder((rows, in_features), dtype, name="x")
    w = te.placeholder((in_features, out_features), dtype, name="w")
    k = te.reduce_axis((0, in_features), name="k")
    acc = te.compute((rows, out_features), lambda i, j: te.sum(x[i, k] * w[k, j], axis=k), name="acc")
    out = te.compute((rows, out_features), lambda i, j: acc[i, j], name="out")
    return te.create_prim_func([x, w, out])


def shift_linear(rows: int, in_features: int, out_features: int, sign_op: str = "multiply"):
    """`Y[i, j] = sum_k sign[k, j] * (X[i, k] >> shift[k, j])`: X int32 (Q16.16), sign and shift int8 [in, out].

    The weights are stored transposed (in, out), so a vector of outputs reads contiguous weights.
    """
    from tvm import te

    _check_sign_op(sign_op)
    x = te.placeholder((rows, in_features), "int32", name="x")
    sign = te.placeholder((in_features, out_features), "int8", name="sign")
    shift = te.placeholder((in_features, out_features), "int8", name="shift")
    k = te.reduce_axis((0, in_features), name="k")
    acc = te.compute((rows, out_features),
                     lambda i, j: te.sum(shift_term(x[i, k], sign[k, j], shift[k, j], sign_op), axis=k), name="acc")
    out = te.compute((rows, out_features), lambda i, j: acc[i, j].astype("int32"), name="out")
    return te.create_prim_func([x, sign, shift, out])


def hamming_scores(heads: int, queries: int, keys: int, bits: int):
    """`S[h, i, j] = bits - 2 * popcount(Q[h, i] XOR K[h, j])` over packed uint64 codes, int32 scores.

    Q is [heads, queries, words], K is transposed [heads, words, keys] so that a vector of keys is contiguous.
    """
    from tvm import te, tirx

    words = round_up(bits, 64) // 64
    q = te.placeholder((heads, queries, words), "uint64", name="q")
    k = te.placeholder((heads, words, keys), "uint64", name="k")
    w = te.reduce_axis((0, words), name="w")
    acc = te.compute((heads, queries, keys),
                     lambda h, i, j: te.sum(tirx.popcount(q[h, i, w] ^ k[h, w, j]).astype("int32"), axis=w),
                     name="acc")
    out = te.compute((heads, queries, keys), lambda h, i, j: bits - 2 * acc[h, i, j], name="out")
    return te.create_prim_func([q, k, out])


def sign_matmul(batch: int, rows: int, inner: int, cols: int, dtype: str = "int32", sign_op: str = "select"):
    """`Y[b] = S[b] @ X[b]` for a {-1, 0, +1} int8 `S` [batch, rows, inner] and `X` [batch, inner, cols].

    With binary codes this is every product of binary attention: scores `Q_b K_b^T`, and the linear form's
    `K_b^T V` and `Q_b (K_b^T V)`. Integer `X` accumulates exactly (uint32 wrap), float `X` in float32.
    """
    from tvm import te

    _check_sign_op(sign_op)
    integer = dtype.startswith("int")
    s = te.placeholder((batch, rows, inner), "int8", name="s")
    x = te.placeholder((batch, inner, cols), dtype, name="x")
    k = te.reduce_axis((0, inner), name="k")

    def term(b, i, j):
        value = x[b, k, j].astype("uint32") if integer else x[b, k, j]
        return signed_term(s[b, i, k], value, sign_op)

    acc = te.compute((batch, rows, cols), lambda b, i, j: te.sum(term(b, i, j), axis=k), name="acc")
    out = te.compute((batch, rows, cols), lambda b, i, j: acc[b, i, j].astype(dtype), name="out")
    return te.create_prim_func([s, x, out])


def batch_matmul(batch: int, rows: int, inner: int, cols: int, dtype: str = "float32"):
    """`Y[b] = A[b] @ B[b]` in `dtype`: the dense baseline of the attention products."""
    from tvm import te

    a = te.placeholder((batch, rows, inner), dtype, name="a")
    b_ = te.placeholder((batch, inner, cols), dtype, name="b")
    k = te.reduce_axis((0, inner), name="k")
    acc = te.compute((batch, rows, cols), lambda b, i, j: te.sum(a[b, i, k] * b_[b, k, j], axis=k), name="acc")
    out = te.compute((batch, rows, cols), lambda b, i, j: acc[b, i, j], name="out")
    return te.create_prim_func([a, b_, out])


# -------------------------------------------------------------------------------------------------- schedules


def default_tiles(target, cols: int, dtype: str = "float32") -> tuple[int, int]:
    """(row_tile, col_tile) of the CPU register tile, 8 accumulator registers (enough to hide FMA latency):
    4 rows by two vectors, or 8 rows by one vector when two do not divide the `cols` columns."""
    lanes = vector_lanes(target, dtype)
    return (4, 2 * lanes) if cols % (2 * lanes) == 0 else (8, lanes)


def schedule_cpu(func, target, *, row_tile: int | None = None, col_tile: int | None = None):
    """Hand CPU schedule of a kernel with an "acc" reduction block and an "out" epilogue block.

    Loops: parallel over (batch, row tiles, column tiles); inside, the reduction; inside, `row_tile` unrolled
    rows by `col_tile` vectorized columns of accumulators; the epilogue writes each tile once it is done.
    Other blocks are inlined into the epilogue if they follow "acc", or run first in parallel if they feed it.
    The last axis of "acc" must be a multiple of `col_tile` (by default of the vector width).
    """
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    acc, out = sch.get_sblock("acc"), sch.get_sblock("out")
    lanes = vector_lanes(target)
    _inline_epilogue_chain(sch, acc, out)
    for block in sch.get_producers(acc):
        _schedule_rowwise(sch, block, lanes)
    *batch, i, j, k = sch.get_loops(acc)
    cols = _extent(sch, j)
    rows_default, cols_default = default_tiles(target, cols)
    row_tile, col_tile = row_tile or rows_default, col_tile or cols_default
    if cols % col_tile:
        raise HwlatError(f"kernels: {cols} columns are not a multiple of the column tile {col_tile} "
                         f"(pad the axis, e.g. to {round_up(cols, col_tile)})")
    row_tile = min(row_tile, _extent(sch, i))
    io, ii = sch.split(i, [None, row_tile])
    jo, ji = sch.split(j, [None, col_tile])
    sch.reorder(*batch, io, jo, k, ii, ji)
    outer = sch.fuse(*batch, io, jo)
    sch.parallel(outer)
    sch.unroll(ii)
    sch.vectorize(ji)
    sch.decompose_reduction(acc, k)
    sch.reverse_compute_at(out, outer)
    *_, out_cols = sch.get_loops(out)
    sch.vectorize(out_cols)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _inline_epilogue_chain(sch, acc, out) -> None:
    """Inline every block between "acc" and "out" (e.g. the stages of `topi.fast_erf`) into "out"."""
    for block in reversed(sch.get_child_blocks(sch.get_sblock("root"))):
        name = sch.get(block).name_hint
        if name in ("acc", "out") or _feeds(sch, block, acc):
            continue
        sch.compute_inline(block)


def _feeds(sch, block, target_block) -> bool:
    """Whether `block` is (transitively) a producer of `target_block`."""
    pending, seen = list(sch.get_producers(target_block)), set()
    while pending:
        current = pending.pop()
        if sch.get(current).same_as(sch.get(block)):
            return True
        name = sch.get(current).name_hint
        if name not in seen:
            seen.add(name)
            pending.extend(sch.get_producers(current))
    return False


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _spatial_loops(sch, block) -> list:
    """The loops of a TE block's data-parallel axes (TE nests them outermost, reductions inside)."""
    from tvm import tirx

    count = sum(int(var.iter_type) == tirx.IterVar.DataPar for var in sch.get(block).iter_vars)
    return list(sch.get_loops(block))[:count]


def _schedule_rowwise(sch, block, lanes: int) -> None:
    """A block run on its own: spatial loops fused and parallel, the innermost vectorized when it is the
    innermost loop of all (no reduction inside) and a multiple of `lanes`."""
    spatial = _spatial_loops(sch, block)
    if not spatial:
        return
    innermost = len(spatial) == len(sch.get_loops(block))
    if innermost and _extent(sch, spatial[-1]) % lanes == 0:
        *spatial, last = spatial
        last_outer, last_inner = sch.split(last, [None, lanes])
        sch.vectorize(last_inner)
        spatial.append(last_outer)
    sch.parallel(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0])


def schedule_gpu(func, target, *, row_tile: int = 8, col_tile: int = 32):
    """A plain GPU schedule: one thread per output, `row_tile` x `col_tile` threads per block, the
    accumulator in a register, the epilogue in the same thread; producers run as their own thread grid.
    Correct, not tuned (no shared-memory tiling)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    acc, out = sch.get_sblock("acc"), sch.get_sblock("out")
    _inline_epilogue_chain(sch, acc, out)
    for block in sch.get_producers(acc):
        _bind_flat(sch, block)
    *batch, i, j, k = sch.get_loops(acc)
    row_tile, col_tile = min(row_tile, _extent(sch, i)), min(col_tile, _extent(sch, j))
    io, ii = sch.split(i, [None, row_tile])
    jo, ji = sch.split(j, [None, col_tile])
    sch.reorder(*batch, io, jo, ii, ji, k)
    sch.bind(sch.fuse(*batch, io), "blockIdx.y")
    sch.bind(jo, "blockIdx.x")
    sch.bind(ii, "threadIdx.y")
    sch.bind(ji, "threadIdx.x")
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, k)
    sch.reverse_compute_at(out, ji)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _bind_flat(sch, block, threads: int = 256) -> None:
    """Bind a block's spatial loops, fused, to (blockIdx.x, threadIdx.x)."""
    loops = _spatial_loops(sch, block)
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    bx, tx = sch.split(fused, [None, min(threads, _extent(sch, fused))])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


# ---------------------------------------------------------------------------------------------------- builds


#: Build options: split loops whose tile does not divide them (197 rows by 4) into a predicate-free main part and
#: a tail; otherwise the row predicate sits in the innermost loop (0.089 vs 0.069 ms for 3x197x64 @ 3x64x208).
PASS_CONFIG = {"s_tir.LoopPartition": {"partition_const_loop": True}}


def build(func, target):
    """Compile one scheduled PrimFunc for `target`; a runtime module whose "main" takes inputs then output."""
    import tvm

    with tvm.transform.PassContext(config=PASS_CONFIG):
        return tvm.tirx.build(tvm.IRModule({"main": func}), target=target)


def check_gpu_code(func, target) -> bool:
    """Whether a GPU-scheduled PrimFunc, lowered for `target` as `build` lowers it, respects `GPU_CONSTRAINTS`
    (TVM's GPU-code verifier on the device kernels: threads per block, shared and local memory, vectors)."""
    import tvm
    from tvm.s_tir.analysis import verify_gpu_code

    bound = tvm.tirx.transform.BindTarget(target.with_host(tvm.target.Target("llvm")))(tvm.IRModule({"main": func}))
    lowered = tvm.tirx.get_tir_pipeline("default")[0](bound)
    return all(verify_gpu_code(f, GPU_CONSTRAINTS) for f in lowered.functions.values()
               if isinstance(f, tvm.tirx.PrimFunc))


def cuda_source(func, target) -> str:
    """The CUDA C source TVM generates for a GPU-scheduled PrimFunc; needs no GPU (TVM's codegen hands the
    source to `tvm_callback_cuda_postproc`, captured here, before any compiler or driver is involved)."""
    import tvm_ffi

    captured: list[str] = []
    name = "tvm_callback_cuda_postproc"
    previous = tvm_ffi.get_global_func(name, allow_missing=True)

    def capture(code, _target):
        captured.append(str(code))
        return previous(code, _target) if previous is not None else code

    tvm_ffi.register_global_func(name, capture, override=True)
    try:
        with contextlib.suppress(Exception):  # building may fail later without a CUDA runtime: the source is kept
            build(func, target)
    finally:
        if previous is not None:
            tvm_ffi.register_global_func(name, previous, override=True)
        else:
            tvm_ffi.registry.remove_global_func(name)
    if not captured:
        raise HwlatError(f"kernels: TVM generated no CUDA source for target {target}")
    return captured[-1]


def tune(func, target, work_dir: str | Path, trials: int = 64, *, seed: int = 0):
    """MetaSchedule's schedule of an unscheduled kernel, tuned with `trials` measured candidates.

    Records live in `work_dir` (MetaSchedule's JSON database); a kernel already tuned there for this target is
    not tuned again, so a rerun only compiles. Tuning measures: run it alone on the machine.
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    mod = tvm.IRModule({"main": func})
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    if not tuned_in(database, mod, target):
        database = ms.tune_tir(mod, target, str(work_dir), max_trials_global=trials,
                               num_trials_per_iter=min(16, trials), seed=seed)
    schedule = ms.tir_integration.compile_tir(database, mod, target)
    if schedule is None:
        raise HwlatError(f"kernels: MetaSchedule found no valid schedule in {work_dir}")
    return schedule.mod["main"].with_attr("tirx.is_scheduled", True)


def tuned_in(database, mod, target) -> bool:
    """Whether `database` holds a tuning record of `mod` for `target`."""
    return database.has_workload(mod) and bool(
        database.get_top_k(database.commit_workload(mod), 1)) and database.query_schedule(
        mod, target, workload_name="main") is not None


def random_inputs(func, rng: np.random.Generator) -> list[np.ndarray]:
    """Seeded random arrays for a kernel's inputs (every parameter but the last, its output)."""
    arrays = []
    for param in list(func.params)[:-1]:
        buffer = param
        shape, dtype = [int(s) for s in buffer.shape], str(buffer.dtype)
        if dtype == "int8":
            arrays.append(rng.integers(-1, 2, shape, dtype=np.int8))
        elif dtype == "uint64":
            arrays.append(rng.integers(0, 2 ** 63, shape, dtype=np.uint64) * 2 + rng.integers(0, 2, shape,
                                                                                              dtype=np.uint64))
        elif dtype.startswith("int"):
            arrays.append(rng.integers(-2 ** 20, 2 ** 20, shape, dtype=dtype))
        else:
            arrays.append(rng.standard_normal(shape, dtype=np.float32).astype(dtype))
    return arrays


def output_spec(func) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) of a kernel's output (its last parameter)."""
    buffer = func.params[-1]
    return tuple(int(s) for s in buffer.shape), str(buffer.dtype)
