"""Latency predictors: fit on source devices, adapt to a new device from a few latencies, predict any arch."""

from hwlat.predictors._base import FORMAT_VERSION, PRESETS, BasePredictor, make_predictor, predictor_kinds
from hwlat.predictors._baselines import ProxyPredictor, TargetOnlyPredictor
from hwlat.predictors._help import HelpPredictor
from hwlat.predictors._oprior import OpPriorPredictor
from hwlat.predictors._protocol import (HELP_PUBLISHED, HELP_SPLITS, POOLS, PROTOCOLS, SELECTIONS, Evaluation,
                                        active_samples, evaluate, holdout, pools, score, source_view, target_samples,
                                        trim)
from hwlat.predictors._shipped import SHIPPED, shipped_predictor

__all__ = ["FORMAT_VERSION", "HELP_PUBLISHED", "HELP_SPLITS", "POOLS", "PRESETS", "PROTOCOLS", "SELECTIONS",
           "SHIPPED", "BasePredictor", "Evaluation", "HelpPredictor", "OpPriorPredictor", "ProxyPredictor",
           "TargetOnlyPredictor", "active_samples", "evaluate", "holdout", "make_predictor", "pools", "predictor_kinds",
           "score", "shipped_predictor", "source_view", "target_samples", "trim"]
