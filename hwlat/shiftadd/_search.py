"""Which primitive each ViT block should use, as a search: accuracy, TVM latency and estimated energy.

Per block the search picks {softmax, binary, binary-linear} attention and a {dense, shift, moe} MLP (the
`shiftadd` space). Accuracy is the digits ViT reparameterized to the choice and briefly fine-tuned (validation
split); latency is predicted by the TVM block lookup table of the model's shape on this machine (stem + blocks
+ head), and the front is then measured as whole compiled models (stored in the measurement store, so a rerun
does not measure again); energy is an op-count estimate with published per-operation energies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwlat._errors import HwlatError
from hwlat.search._metrics import FunctionMetric, Metric

SPACE = "shiftadd"


def _platform(threads: int, moe_shift_fraction: float) -> str:
    return f"tvm-shiftadd/t{threads}/b1/moe{moe_shift_fraction:g}"


class WholeModelLatency(Metric):
    """Latency (ms) of whole TVM-compiled models of `model`'s shape on this machine, kept in `store`: the smallest
    median of `processes` fresh processes (tagged "process0", ...), the rule the block table follows
    (interference only adds time)."""

    goal = "min"
    costly = True

    def __init__(self, model: str, store, *, threads: int = 2, moe_shift_fraction: float = 0.6, protocol=None,
                 processes: int = 3, name: str = "measured_latency_ms",
                 on_item: Callable[[str, float], None] | None = None) -> None:
        if processes < 1:
            raise HwlatError(f"processes must be >= 1, got {processes}")
        self.model, self.store, self.threads, self.processes = model, store, threads, processes
        self.moe_shift_fraction, self.protocol, self.name, self.on_item = moe_shift_fraction, protocol, name, on_item

    def __call__(self, archs: Sequence[str]) -> np.ndarray:
        from hwlat.devices import local_device
        from hwlat.shiftadd._tvm_latency import measure_vit_latency
        from hwlat.spaces import get_space
        from hwlat.store._schema import STAT_FIELDS

        space = get_space(SPACE)
        device, platform = local_device(), _platform(self.threads, self.moe_shift_fraction)
        self.store.add_device(device)

        def stored():  # the stored medians, grouped by arch
            return self.store.frame(space=SPACE, device_id=device.id, platform=platform).groupby("arch")["median_ms"]

        counts = stored().size().to_dict()
        for _ in range(self.processes):  # passes over the archs, so one process's luck is not one arch's
            for arch in dict.fromkeys(archs):
                if counts.get(arch, 0) >= self.processes:
                    continue
                stats = measure_vit_latency(space.config, space.blocks(arch), threads=self.threads,
                                            moe_shift_fraction=self.moe_shift_fraction,
                                            protocol=self.protocol).as_dict()
                self.store.add({"space": SPACE, "arch": arch, "device_id": device.id, "platform": platform,
                                "tag": f"process{counts.get(arch, 0)}", "runtime": "tvm",
                                "runtime_version": _tvm_version(), "batch_size": 1, "threads": self.threads,
                                "settings": json.dumps({"model": self.model}),
                                **{k: stats[k] for k in STAT_FIELDS}})
                counts[arch] = counts.get(arch, 0) + 1
                if self.on_item:
                    self.on_item(arch, stats["median_ms"])
        return stored().min().reindex(list(archs)).to_numpy(float)

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model, "threads": self.threads, "processes": self.processes,
                "moe_shift_fraction": self.moe_shift_fraction}


def _tvm_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("apache-tvm")


@dataclass
class ShiftAddSearch:
    """A finished ShiftAdd search: the search result, the latency table, the original model's figures and the
    measured front (predicted beside measured whole-model latency)."""

    result: object  # hwlat.search.SearchResult
    table: object  # BlockLatencyTable
    original: dict
    measured: pd.DataFrame

    def report(self):
        """The Pareto report (accuracy vs predicted latency, energy beside), with the measured front merged in."""
        report = self.result.report("hwlat shiftadd", extra_settings={"original_model": self.original,
                                                                      "latency_table": self.table.as_dict()})
        extra = self.measured.set_index("arch")["measured_latency_ms"]
        report.points["measured_latency_ms"] = report.points["arch"].map(extra)
        return report


def shiftadd_metrics(model: str, table, *, base, finetune_epochs: int, seed: int,
                     moe_shift_fraction: float) -> list[Metric]:
    """Accuracy (costly: a fine-tune per arch), predicted latency and estimated energy of `shiftadd` archs."""
    from hwlat.shiftadd._config import get_model_config
    from hwlat.shiftadd._energy import estimate_energy
    from hwlat.shiftadd._train import finetuned_accuracy
    from hwlat.spaces import get_space

    space, config = get_space(SPACE), get_model_config(model)

    def accuracy(arch: str) -> float:
        return finetuned_accuracy(space.blocks(arch), base, epochs=finetune_epochs, seed=seed)

    def latency(arch: str) -> float:
        return table.predict(space.blocks(arch))

    def energy(arch: str) -> float:
        return estimate_energy(config, space.blocks(arch), moe_shift_fraction).total_uj

    return [FunctionMetric("accuracy", accuracy, "max"), FunctionMetric("latency_ms", latency, "min", costly=False),
            FunctionMetric("energy_uj", energy, "min", costly=False)]


def search_shiftadd(model: str = "vit-tiny", *, trials: int = 40, seed: int = 0, strategy: str = "nsga2",
                    threads: int = 2, moe_shift_fraction: float = 0.6, finetune_epochs: int | None = None,
                    base_epochs: int | None = None, verify: int = 5, processes: int = 3, storage: str | None = None,
                    study_name: str | None = None, store=None, protocol=None, on_stage: Callable[[str], None] | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    on_table_item: Callable[[str, object], None] | None = None,
                    on_measured: Callable[[str, float], None] | None = None) -> ShiftAddSearch:
    """Train (or load) the digits base, measure the latency table, search, then measure the front as whole models.

    `verify` front members (fewest-latency first) and the original model are compiled and timed whole, each in
    `processes` fresh processes.
    `base_epochs` shortens the base model's training (default: the library's budget).
    """
    from hwlat.search import run_search
    from hwlat.shiftadd._config import ATTENTION_KINDS, MLP_KINDS, VIT_DIGITS, get_model_config, uniform_choices
    from hwlat.shiftadd._train import FINETUNE, Budget, evaluate, trained_base
    from hwlat.shiftadd._tvm_latency import block_latency_table
    from hwlat.spaces import get_space
    from hwlat.store import MeasurementStore

    config = get_model_config(model)
    if verify < 0:
        raise HwlatError(f"--verify must be 0 or more front members, got {verify}")
    if processes < 1:
        raise HwlatError(f"--processes must be 1 or more, got {processes}")
    epochs = FINETUNE.epochs if finetune_epochs is None else finetune_epochs
    say = on_stage or (lambda _text: None)
    say("training the digits ViT (cached after the first run)")
    base = trained_base(VIT_DIGITS, seed=seed, budget=Budget() if base_epochs is None else Budget(epochs=base_epochs,
                                                                                                  warmup_epochs=0))
    say(f"latency table of {model} with TVM on this machine (cached after the first run)")
    table = block_latency_table(config, threads=threads, moe_shift_fraction=moe_shift_fraction, protocol=protocol,
                                on_item=on_table_item)
    metrics = shiftadd_metrics(model, table, base=base, finetune_epochs=epochs, seed=seed,
                               moe_shift_fraction=moe_shift_fraction)
    space = get_space(SPACE)
    uniform = [space.from_blocks(uniform_choices(config.depth, a, m)) for a in ATTENTION_KINDS for m in MLP_KINDS]
    say(f"searching {trials} archs ({strategy}), starting from the {len(uniform)} uniform ones")
    result = run_search(SPACE, metrics, strategy=strategy, trials=trials, seed=seed, storage=storage,
                        study_name=study_name or f"shiftadd-{model}-{strategy}-seed{seed}", initial=uniform,
                        progress=progress)
    original = uniform[0]
    truth = WholeModelLatency(model, store if store is not None else MeasurementStore(), threads=threads,
                              moe_shift_fraction=moe_shift_fraction, protocol=protocol, processes=processes,
                              on_item=on_measured)
    front = result.front.sort_values("latency_ms").head(verify)
    say(f"measuring the original model and {len(front)} front members as whole TVM models")
    archs = list(dict.fromkeys([original, *front["arch"]]))
    measured = pd.DataFrame({"arch": archs, "measured_latency_ms": truth(archs)})
    original_values = {name: float(metric([original])[0]) for name, metric in
                       (("latency_ms", metrics[1]), ("energy_uj", metrics[2]))}
    original_values.update(arch=original, accuracy=evaluate(base, "val"),
                           measured_latency_ms=float(measured["measured_latency_ms"].iloc[0]))
    return ShiftAddSearch(result, table, original_values, measured)
