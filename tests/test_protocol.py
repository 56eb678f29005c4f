"""The measurement protocol on synthetic timers: statistics, stopping rule, CI coverage."""

import math

import numpy as np
import pytest

from hwlat._errors import HwlatError
from hwlat.profilers import MeasurementProtocol, measure, median_confidence_interval
from hwlat.profilers._protocol import relative_ci_width, summarize


def synthetic_timer(latencies_ms, rng_seed=0):
    """A timer whose per-call time is drawn from `latencies_ms()`; records how often it was called."""
    rng = np.random.default_rng(rng_seed)
    calls = []

    def timed(number):
        calls.append(number)
        return int(sum(latencies_ms(rng) for _ in range(number)) * 1e6)

    timed.calls = calls
    return timed


FAST = dict(warmup_seconds=0.0, time_budget_s=5.0)


def test_constant_latency_converges_at_min_repeats():
    timer = synthetic_timer(lambda rng: 2.0)
    stats = measure(timer, MeasurementProtocol(warmup_runs=3, min_repeats=20, **FAST))
    assert stats.converged and stats.n == 20 and stats.warmup == 3
    assert stats.median_ms == pytest.approx(2.0) and stats.cv == pytest.approx(0.0)
    assert len(timer.calls) == 23


def test_noisy_latency_repeats_until_ci_target():
    timer = synthetic_timer(lambda rng: rng.lognormal(np.log(5.0), 0.05))
    stats = measure(timer, MeasurementProtocol(min_repeats=20, target_rel_ci=0.005, **FAST))
    assert stats.converged and stats.ci_rel <= 0.005
    assert stats.n > 20, "5 % noise cannot give a 0.5 % CI with 20 samples"
    assert stats.ci_low_ms <= stats.median_ms <= stats.ci_high_ms
    assert stats.median_ms == pytest.approx(5.0, rel=0.01)
    assert stats.p10_ms < stats.median_ms < stats.p90_ms
    assert stats.cv == pytest.approx(0.05, rel=0.25)


def test_max_repeats_stops_unconverged():
    timer = synthetic_timer(lambda rng: rng.exponential(1.0))
    stats = measure(timer, MeasurementProtocol(min_repeats=20, max_repeats=40, target_rel_ci=1e-4, **FAST))
    assert stats.n == 40 and not stats.converged


def test_time_budget_stops_unconverged():
    import time

    def slow(number):
        time.sleep(0.002 * number)
        return int(np.random.default_rng().exponential(2e6) * number)

    stats = measure(slow, MeasurementProtocol(min_repeats=10, target_rel_ci=1e-6, time_budget_s=0.2,
                                              warmup_runs=1, warmup_seconds=0.0))
    assert not stats.converged and 10 <= stats.n < 200 and stats.wall_s < 1.0


def test_min_sample_time_batches_fast_calls():
    timer = synthetic_timer(lambda rng: 0.01)  # 10 us per call
    stats = measure(timer, MeasurementProtocol(min_sample_s=0.001, **FAST))
    assert stats.number == 100 and stats.median_ms == pytest.approx(0.01)
    assert all(n == 100 for n in timer.calls[-stats.n:])


def test_outliers_excluded_from_mean_not_from_median():
    samples = np.full(50, 1e6)
    samples[:2] = 50e6  # two 50 ms stalls among 1 ms samples
    samples[2:] += np.linspace(0, 1e4, 48)
    stats = summarize(samples, number=1, warmup=0, wall_s=0.1, confidence=0.95, target_rel_ci=0.01)
    assert stats.n_outliers == 2 and stats.mean_ms < 1.02 and stats.max_ms == pytest.approx(50.0)


def test_median_ci_matches_binomial_order_statistics():
    # n = 20: the 95 % interval is [x(6), x(15)] (ranks from the binomial table)
    samples = np.arange(1, 21, dtype=float)
    assert median_confidence_interval(samples, 0.95) == (6.0, 15.0)
    assert median_confidence_interval(np.arange(5.0), 0.95) == (-math.inf, math.inf)
    assert relative_ci_width(np.arange(5.0)) == math.inf


def test_median_ci_coverage_on_skewed_distribution():
    rng = np.random.default_rng(1)
    true_median = np.log(2)  # median of Exp(1)
    hits = 0
    for _ in range(2000):
        low, high = median_confidence_interval(rng.exponential(1.0, 40), 0.95)
        hits += low <= true_median <= high
    assert 0.94 <= hits / 2000 <= 0.985  # order-statistic intervals are conservative


@pytest.mark.parametrize("bad", [dict(min_repeats=3), dict(target_rel_ci=0), dict(confidence=1.0),
                                 dict(time_budget_s=-1), dict(max_repeats=5)])
def test_invalid_protocol_names_the_setting(bad):
    with pytest.raises(HwlatError, match=next(iter(bad))):
        MeasurementProtocol(**bad)


def test_gc_disabled_while_timing_and_restored():
    import gc

    seen = []
    timer = synthetic_timer(lambda rng: seen.append(gc.isenabled()) or 1.0)
    measure(timer, MeasurementProtocol(**FAST))
    assert not any(seen) and gc.isenabled()


def test_cuda_event_timer_logic_with_fake_events():
    from hwlat.profilers.runtimes._torch import cuda_event_timer

    class FakeEvent:
        clock = 0.0

        def __init__(self, enable_timing):
            assert enable_timing
            self.t = None

        def record(self):
            self.t = FakeEvent.clock

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return other.t - self.t  # ms

    syncs = []

    def run_once():
        FakeEvent.clock += 1.5

    timed = cuda_event_timer(run_once, FakeEvent, lambda: syncs.append(1))
    assert timed(4) == 6_000_000 and syncs == [1]
