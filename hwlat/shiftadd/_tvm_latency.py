"""Latency of ShiftAdd ViTs compiled by TVM: the whole model, and a per-block lookup table that predicts it.

Each measurement runs in a fresh worker process with its thread count set before TVM is imported (TVM's thread
pool keeps spinning after parallel kernels and would disturb anything else timed in the same process), with
hwlat's measurement protocol around one Relax VM call. The table holds the stem, the head and one entry per
(attention, mlp) kind, so a whole model is predicted as `stem + sum of its blocks + head`; it is cached in the
hwlat home folder, keyed by shape, target, machine, threads, MoE fraction and the kernels' code, and filled
entry by entry, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hwlat._errors import HwlatError
from hwlat._files import write_atomically
from hwlat._home import hwlat_home
from hwlat.profilers._protocol import MeasurementProtocol, TimingStats
from hwlat.profilers._worker import THREAD_ENV_VARS
from hwlat.shiftadd._config import ATTENTION_KINDS, MLP_KINDS, BlockChoice, ViTConfig

#: Blocks in a row per table entry, each with its own weights, so that weights leave the caches between calls
#: as in the whole model (one block alone keeps its weights cached and was up to 11 % faster than in the model).
BLOCK_COPIES = 4
#: Passes over all table entries, each in a fresh process; an entry keeps its smallest median (interference
#: only ever adds time, and the same model varied by about 6 % between processes here).
ROUNDS = 3
#: Source files whose code decides the measured latency: a change to any of them invalidates cached tables.
_CODE_FILES = ("_kernels.py", "_tvm_ops.py", "_tvm_model.py", "_tvm_latency.py")


def _set_threads(threads: int) -> None:
    """Worker initializer: thread counts for every engine, before any is imported."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)


def _measure_job(job: dict) -> dict:
    """In the worker: build, compile and time one module (the whole model or a part); TimingStats as a dict."""
    import tvm
    from tvm import relax

    from hwlat.profilers._protocol import measure, perf_counter_timer
    from hwlat.profilers.runtimes._tvm import tvm_target
    from hwlat.shiftadd._tvm_model import compile_module, input_shape, part_module, vit_module

    config: ViTConfig = job["config"]
    target = tvm_target(job["target"], job["threads"])
    options = {"moe_shift_fraction": job["moe_shift_fraction"]}
    if job["part"] == "model":
        mod = vit_module(config, job["choices"], target, **options)
    else:
        mod = part_module(config, job["part"], target, choice=job.get("choice"), copies=job.get("copies", 1),
                          **options)
    vm = relax.VirtualMachine(compile_module(mod, target), tvm.cpu())
    example = np.random.default_rng(0).standard_normal(input_shape(mod)).astype(np.float32)
    inputs = tvm.runtime.tensor(example, tvm.cpu())
    main = vm["main"]
    return measure(perf_counter_timer(lambda: main(inputs)), MeasurementProtocol(**job["protocol"])).as_dict()


class SpawnedWorker:
    """One spawned process with `threads` set for every engine; runs calls one after the other."""

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise HwlatError(f"threads must be >= 1, got {threads}")
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(1, mp_context=context, initializer=_set_threads, initargs=(threads,))

    def call(self, function: Callable, *args):
        """`function(*args)` in the worker (a picklable top-level function); errors as one-line HwlatErrors."""
        try:
            return self._pool.submit(function, *args).result()
        except HwlatError:
            raise
        except Exception as exc:  # e.g. a TVM error in the worker: one line, not its C++ traceback
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise HwlatError(f"worker: {type(exc).__name__}: {first}") from None

    def measure(self, job: dict) -> TimingStats:
        """Latency of one TVM module job (see `_job`)."""
        return TimingStats(**self.call(_measure_job, job))

    def __enter__(self) -> SpawnedWorker:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(cancel_futures=True)


def _job(config: ViTConfig, part: str, *, threads: int, moe_shift_fraction: float, protocol: MeasurementProtocol,
         target: dict | None, **extra) -> dict:
    return {"config": config, "part": part, "threads": threads, "moe_shift_fraction": moe_shift_fraction,
            "protocol": protocol.as_dict(), "target": target, **extra}


def measure_vit_latency(config: ViTConfig, choices: Sequence[BlockChoice], *, threads: int = 2,
                        moe_shift_fraction: float = 0.6, protocol: MeasurementProtocol | None = None,
                        target: dict | None = None) -> TimingStats:
    """Latency of the whole ViT with per-block `choices`, compiled by TVM (random weights), batch 1.

    Runs in a separate process; `target` is a TVM target dict (default: this host's LLVM CPU).
    """
    from hwlat.shiftadd._tvm_model import check_choices, moe_split

    choices = check_choices(config, choices)
    moe_split(config.tokens, moe_shift_fraction)  # validates the fraction before a process starts
    with SpawnedWorker(threads) as worker:
        return worker.measure(_job(config, "model", threads=threads, moe_shift_fraction=moe_shift_fraction,
                                   protocol=protocol or MeasurementProtocol(), target=target, choices=choices))


def block_key(choice: BlockChoice) -> str:
    """Table key of a block choice, e.g. ``"binary/shift"``."""
    return f"{choice.attention}/{choice.mlp}"


@dataclass(frozen=True)
class BlockLatencyTable:
    """Median latencies (ms) of the stem, the head and one block of each (attention, mlp) kind."""

    key: dict
    stem_ms: float
    head_ms: float
    blocks_ms: dict[str, float] = field(default_factory=dict)

    def predict(self, choices: Sequence[BlockChoice]) -> float:
        """Predicted whole-model latency: stem + sum of the chosen blocks' entries + head."""
        missing = {block_key(c) for c in choices} - set(self.blocks_ms)
        if missing:
            raise HwlatError(f"shiftadd: latency table has no entry for {', '.join(sorted(missing))}")
        return self.stem_ms + sum(self.blocks_ms[block_key(c)] for c in choices) + self.head_ms

    def as_dict(self) -> dict:
        return asdict(self)


def table_key(config: ViTConfig, *, threads: int, moe_shift_fraction: float, target: dict | None) -> dict:
    """What a cached table's numbers depend on: shape, target, machine, threads, MoE split, code, TVM version."""
    from hwlat.devices import device_id, read_fingerprint

    here = Path(__file__).parent
    code = hashlib.sha256(b"".join((here / name).read_bytes() for name in _CODE_FILES)).hexdigest()[:16]
    return {"config": asdict(config), "target": target or "host-llvm", "device": device_id(read_fingerprint()),
            "threads": threads, "moe_shift_fraction": moe_shift_fraction, "code": code,
            "tvm": importlib.metadata.version("apache-tvm")}


def table_path(key: dict) -> Path:
    """Cache file of the table with `key` under the hwlat home folder."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return hwlat_home() / "cache" / "shiftadd-latency" / f"{digest}.json"


def table_entries() -> list[tuple[str, BlockChoice | None]]:
    """(entry name, block choice) of every entry a table measures: stem, head and the 9 block kinds."""
    blocks = [(block_key(c), c) for c in (BlockChoice(a, m) for a in ATTENTION_KINDS for m in MLP_KINDS)]
    return [("stem", None), ("head", None), *blocks]


def block_latency_table(config: ViTConfig, *, threads: int = 2, moe_shift_fraction: float = 0.6,
                        protocol: MeasurementProtocol | None = None, target: dict | None = None,
                        refresh: bool = False,
                        on_item: Callable[[str, TimingStats | None], None] | None = None) -> BlockLatencyTable:
    """Measure (or read from the cache) the latency table of `config` with TVM; see `BlockLatencyTable`.

    Each entry is measured in `ROUNDS` passes (blocks as `BLOCK_COPIES` in a row) and saved as it is measured
    (resumable); `refresh` measures everything again. `on_item(name, stats)` reports each finished entry, with
    `stats=None` when it came from the cache.
    """
    from hwlat.shiftadd._tvm_model import moe_split

    moe_split(config.tokens, moe_shift_fraction)
    key = table_key(config, threads=threads, moe_shift_fraction=moe_shift_fraction, target=target)
    path = table_path(key)
    entries: dict[str, list[dict]] = {} if refresh or not path.is_file() else json.loads(path.read_text())["entries"]
    plan = table_entries()
    for name, _ in plan:
        if on_item and len(entries.get(name, [])) >= ROUNDS:
            on_item(name, None)
    if any(len(entries.get(name, [])) < ROUNDS for name, _ in plan):
        path.parent.mkdir(parents=True, exist_ok=True)
        protocol = protocol or MeasurementProtocol()
        for round_ in range(ROUNDS):
            todo = [(name, choice) for name, choice in plan if len(entries.get(name, [])) <= round_]
            if not todo:
                continue
            with SpawnedWorker(threads) as worker:  # a fresh process per pass: process-level luck is not shared
                for name, choice in todo:
                    extra = {"choice": choice, "copies": BLOCK_COPIES} if choice is not None else {}
                    stats = worker.measure(_job(config, "block" if choice is not None else name, threads=threads,
                                                moe_shift_fraction=moe_shift_fraction, protocol=protocol,
                                                target=target, **extra))
                    entries.setdefault(name, []).append(stats.as_dict())
                    text = json.dumps({"key": key, "entries": entries}, indent=1)
                    write_atomically({path: lambda tmp, text=text: tmp.write_text(text)})
                    if on_item and round_ == ROUNDS - 1:
                        on_item(name, stats)
    medians = {name: min(stats["median_ms"] for stats in entries[name]) / (BLOCK_COPIES if choice else 1)
               for name, choice in plan}
    return BlockLatencyTable(key=key, stem_ms=medians.pop("stem"), head_ms=medians.pop("head"), blocks_ms=medians)
