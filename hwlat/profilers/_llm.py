"""LLM serving latency of a space's causal LMs: time to first token (prefill) and time per output token (decode).

TTFT is one prefill of a `prompt`-token prompt at a batch size, up to the first token's logits. TPOT is one
decode step with a cache already holding `prompt` tokens; since caches are never changed in place, every timed
step decodes from the same context, so samples are alike. Both go through `MeasurementProtocol` and are stored
as separate platforms of the measurement store (``torch-llm/t1/b4/ttft-p256``, ``torch-llm/t1/b4/tpot-c256``),
so a `LatencyDataset` built from the store has them as separate objectives. Timing runs in one worker process
with its thread count (and optionally its cores) set before torch loads.

`clock="cpu"` times with the process's CPU time instead of the wall clock (platform suffix ``/cpu``): on a
machine shared with other work, time slices lost to other processes then do not count. It equals wall time
only for single-threaded runs on an otherwise idle core, and still includes cache and memory interference.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from hwlat._errors import HwlatError
from hwlat.profilers._protocol import MeasurementProtocol, measure, perf_counter_timer
from hwlat.profilers._worker import THREAD_ENV_VARS

#: the two serving latencies, each a platform suffix format
METRICS = {"ttft": "ttft-p{prompt}", "tpot": "tpot-c{prompt}"}
RUNTIME = "torch-llm"
CLOCKS = ("wall", "cpu")


def llm_platform(metric: str, threads: int, batch_size: int, prompt: int, clock: str = "wall") -> str:
    """Platform key of one serving latency, e.g. ``torch-llm/t1/b1/ttft-p256`` (``.../cpu`` on the CPU clock)."""
    if metric not in METRICS:
        raise HwlatError(f"unknown LLM latency {metric!r} (known: {', '.join(METRICS)})")
    if clock not in CLOCKS:
        raise HwlatError(f"unknown clock {clock!r} (known: {', '.join(CLOCKS)})")
    suffix = "" if clock == "wall" else f"/{clock}"
    return f"{RUNTIME}/t{threads}/b{batch_size}/{METRICS[metric].format(prompt=prompt)}{suffix}"


def time_llm(space: str, arch: str, batch_size: int, prompt: int,
             protocol: MeasurementProtocol = MeasurementProtocol(), clock: str = "wall") -> dict[str, dict]:
    """TTFT and TPOT statistics (`TimingStats` as dicts, ms) of `arch` in this process, on seeded random tokens."""
    import torch

    from hwlat.spaces import get_space

    if batch_size < 1 or prompt < 1:
        raise HwlatError(f"batch size and prompt length must be positive, got {batch_size} and {prompt}")
    if clock not in CLOCKS:
        raise HwlatError(f"unknown clock {clock!r} (known: {', '.join(CLOCKS)})")
    timer = perf_counter_timer if clock == "wall" else functools.partial(perf_counter_timer, clock=time.process_time_ns)
    model = get_space(space).build(arch)
    if not hasattr(model, "prefill"):
        raise HwlatError(f"space {space!r} builds no causal LM (its models have no prefill/step)")
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.embed.num_embeddings, (batch_size, prompt), generator=generator)
    with torch.inference_mode():
        logits, cache = model.prefill(tokens, last_only=True)
        following = logits[:, -1].argmax(-1)
        ttft = measure(timer(lambda: model.prefill(tokens, last_only=True)), protocol)
        tpot = measure(timer(lambda: model.step(following, cache)), protocol)
    return {"ttft": ttft.as_dict(), "tpot": tpot.as_dict()}


def _init_worker(threads: int, cpus: tuple[int, ...] | None) -> None:
    """Thread settings and core pinning of the timing process, before torch is imported."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    if cpus:
        os.sched_setaffinity(0, cpus)
    import torch

    torch.set_num_threads(threads)


def profile_llm(archs: Sequence[str], *, space: str = "hybrid-lm", batch_sizes: Sequence[int] = (1,),
                prompt: int | None = None, threads: int = 1, cpus: Sequence[int] | None = None,
                protocol: MeasurementProtocol = MeasurementProtocol(), store=None, tag: str = "", clock: str = "wall",
                on_item: Callable[[str, int, dict], None] | None = None) -> int:
    """Measure TTFT and TPOT of `archs` at each batch size and add them to `store` (a `MeasurementStore` or URL).

    What the store already holds is skipped, so a rerun resumes; returns the number of records added.
    `on_item(arch, batch_size, stats)` reports progress.
    """
    from hwlat.devices import local_device
    from hwlat.spaces import get_space
    from hwlat.store import MeasurementStore

    canonical = [get_space(space).canonical(a) for a in archs]
    prompt = prompt or get_space(space).input_shape(1)[1]
    store = store if isinstance(store, MeasurementStore) else MeasurementStore(store)
    device = local_device()
    store.add_device(device)
    settings = json.dumps({"prompt": prompt, "clock": clock, "protocol": protocol.as_dict(),
                           "cpus": list(cpus) if cpus else None}, sort_keys=True)
    added = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker,
                             initargs=(threads, tuple(cpus) if cpus else None)) as pool:
        version = pool.submit(_torch_version).result()
        for batch in batch_sizes:
            platforms = {m: llm_platform(m, threads, batch, prompt, clock) for m in METRICS}
            done = set.intersection(*(store.completed(space=space, device_id=device.id, platform=p, tag=tag)
                                      for p in platforms.values()))
            for arch in (a for a in canonical if a not in done):
                stats = pool.submit(time_llm, space, arch, batch, prompt, protocol, clock).result()
                for metric, platform in platforms.items():
                    added += store.add({"space": space, "arch": arch, "device_id": device.id, "platform": platform,
                                        "tag": tag, "runtime": RUNTIME, "runtime_version": version,
                                        "batch_size": batch, "threads": threads, "settings": settings,
                                        "flops": get_space(space).flops(arch), "params": get_space(space).params(arch),
                                        **stats[metric]})
                if on_item:
                    on_item(arch, batch, stats)
    return added


def _torch_version() -> str:
    import torch

    return f"torch {torch.__version__}"
