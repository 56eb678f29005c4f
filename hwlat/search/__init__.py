"""Architecture search: Optuna studies over a space, scored by tables, predictors and callables, with constraints."""

from hwlat.search._evolution import AgingEvolutionSampler
from hwlat.search._metrics import (
                                   NATS_BENCH_COLUMNS,
                                   Constraint,
                                   FunctionMetric,
                                   LatencyLookup,
                                   Metric,
                                   MnasReward,
                                   PredictedLatency,
                                   SpaceCount,
                                   TableMetric,
                                   nats_bench_accuracy,
                                   table_metric,
)
from hwlat.search._result import SearchResult
from hwlat.search._samplers import STRATEGIES, make_sampler
from hwlat.search._search import run_search

__all__ = ["NATS_BENCH_COLUMNS", "STRATEGIES", "AgingEvolutionSampler", "Constraint", "FunctionMetric",
           "LatencyLookup", "Metric", "MnasReward", "PredictedLatency", "SearchResult", "SpaceCount", "TableMetric",
           "make_sampler", "nats_bench_accuracy", "run_search", "table_metric"]
