"""One measurement protocol for every runtime: warm-up, then repeat until the median is known tightly.

The stopping rule uses a distribution-free confidence interval of the median (order statistics of a
binomial), so it makes no normality assumption about latencies, which are right-skewed.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from hwlat._errors import HwlatError

#: runs `number` inferences and returns the elapsed time in nanoseconds
Timer = Callable[[int], int]


def perf_counter_timer(run_once: Callable[[], object], clock: Callable[[], int] = time.perf_counter_ns) -> Timer:
    """Timer around a zero-argument call, on the monotonic `perf_counter_ns` clock unless another `clock` is given
    (e.g. `time.process_time_ns`: this process's CPU time)."""

    def timed(number: int) -> int:
        start = clock()
        for _ in range(number):
            run_once()
        return clock() - start

    return timed


@dataclass(frozen=True)
class MeasurementProtocol:
    """How long to warm up, when to stop repeating, and what counts as converged."""

    warmup_runs: int = 10
    warmup_seconds: float = 0.1
    min_repeats: int = 20
    max_repeats: int = 5000
    target_rel_ci: float = 0.01
    confidence: float = 0.95
    time_budget_s: float = 2.0
    min_sample_s: float = 0.0
    check_every: int = 10
    disable_gc: bool = True

    def __post_init__(self) -> None:
        checks = {
            "warmup_runs": self.warmup_runs >= 0,
            "warmup_seconds": self.warmup_seconds >= 0,
            "min_repeats": self.min_repeats >= 6,
            "max_repeats": self.max_repeats >= self.min_repeats,
            "target_rel_ci": self.target_rel_ci > 0,
            "confidence": 0 < self.confidence < 1,
            "time_budget_s": self.time_budget_s > 0,
            "min_sample_s": self.min_sample_s >= 0,
            "check_every": self.check_every >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise HwlatError(f"invalid measurement protocol: {values} (min_repeats >= 6, others positive)")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimingStats:
    """Summary of one measurement; times are per inference, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    ci_low_ms: float
    ci_high_ms: float
    ci_rel: float
    cv: float
    n: int
    n_outliers: int
    number: int
    warmup: int
    converged: bool
    wall_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def median_confidence_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median from order statistics; (-inf, inf) if n is too small.

    With X ~ Binomial(n, 1/2) counting samples below the true median, the interval between the k-th
    smallest and k-th largest sample covers it with probability 1 - 2 P(X <= k - 1).
    """
    ordered = np.sort(np.asarray(samples, dtype=float))
    n = ordered.size
    k = int(stats.binom.ppf((1 - confidence) / 2, n, 0.5))
    if k < 1 or stats.binom.cdf(k - 1, n, 0.5) > (1 - confidence) / 2:
        return -math.inf, math.inf
    return float(ordered[k - 1]), float(ordered[n - k])


def relative_ci_width(samples: np.ndarray, confidence: float = 0.95) -> float:
    """Half-width of the median's confidence interval divided by the median."""
    low, high = median_confidence_interval(samples, confidence)
    median = float(np.median(samples))
    if not math.isfinite(low) or median <= 0:
        return math.inf
    return (high - low) / (2 * median)


def summarize(samples_ns: np.ndarray, number: int, warmup: int, wall_s: float, confidence: float,
              target_rel_ci: float) -> TimingStats:
    """Statistics of per-sample times; mean, std and CV exclude far-out values (Tukey, 3 IQR)."""
    per_call_ms = np.asarray(samples_ns, dtype=float) / number / 1e6
    q1, q3 = np.percentile(per_call_ms, [25, 75])
    fence = 3 * (q3 - q1)
    inliers = per_call_ms[(per_call_ms >= q1 - fence) & (per_call_ms <= q3 + fence)]
    low, high = median_confidence_interval(per_call_ms, confidence)
    mean = float(inliers.mean())
    std = float(inliers.std(ddof=1)) if inliers.size > 1 else 0.0
    ci_rel = relative_ci_width(per_call_ms, confidence)
    return TimingStats(
        median_ms=float(np.median(per_call_ms)),
        mean_ms=mean,
        std_ms=std,
        p10_ms=float(np.percentile(per_call_ms, 10)),
        p90_ms=float(np.percentile(per_call_ms, 90)),
        min_ms=float(per_call_ms.min()),
        max_ms=float(per_call_ms.max()),
        ci_low_ms=low,
        ci_high_ms=high,
        ci_rel=ci_rel,
        cv=std / mean if mean > 0 else math.inf,
        n=int(per_call_ms.size),
        n_outliers=int(per_call_ms.size - inliers.size),
        number=number,
        warmup=warmup,
        converged=bool(ci_rel <= target_rel_ci),
        wall_s=wall_s,
    )


def measure(timer: Timer, protocol: MeasurementProtocol = MeasurementProtocol()) -> TimingStats:
    """Warm up, then time samples until the median's relative CI meets the target or the budget ends."""
    gc_was_enabled = gc.isenabled()
    if protocol.disable_gc:
        gc.collect()
        gc.disable()
    started = time.perf_counter()
    try:
        warmup_ns = []
        while len(warmup_ns) < protocol.warmup_runs or time.perf_counter() - started < protocol.warmup_seconds:
            warmup_ns.append(timer(1))
            if time.perf_counter() - started > protocol.time_budget_s / 2:
                break
        single_s = float(np.median(warmup_ns)) / 1e9 if warmup_ns else 0.0
        number = max(1, math.ceil(protocol.min_sample_s / single_s)) if single_s > 0 else 1

        samples: list[int] = []
        deadline = time.perf_counter() + protocol.time_budget_s
        while len(samples) < protocol.max_repeats:
            for _ in range(min(protocol.check_every, protocol.max_repeats - len(samples))):
                samples.append(timer(number))
            if len(samples) < protocol.min_repeats:
                continue
            if relative_ci_width(np.asarray(samples), protocol.confidence) <= protocol.target_rel_ci:
                break
            if time.perf_counter() >= deadline:
                break
    finally:
        if protocol.disable_gc and gc_was_enabled:
            gc.enable()
    return summarize(np.asarray(samples), number, len(warmup_ns), time.perf_counter() - started,
                     protocol.confidence, protocol.target_rel_ci)
