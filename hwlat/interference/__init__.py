"""Interference models: a target's latency slowdown beside co-runners, from the co-runners' metric signature."""

from hwlat.interference._baselines import (BASES, FITTED_BASE, BoostedInterference, LinearInterference,
                                           NoInterference, TimeSliceInterference)
from hwlat.interference._colocated import QUANTILES, ColocatedLatency, WorkloadSignature
from hwlat.interference._contended import ContendedSliceInterference
from hwlat.interference._evaluate import SPLITS, CrossValidation, cross_validate, evaluate_on, mae_percent, tune
from hwlat.interference._features import EXTRAS, TARGETS, FeatureSpec, InterferenceData
from hwlat.interference._model import FORMAT_VERSION, InterferenceModel, make_model, model_kinds
from hwlat.interference._transformer import BRANCHES, LOSSES, TransformerInterference

__all__ = ["BASES", "BRANCHES", "EXTRAS", "FITTED_BASE", "FORMAT_VERSION", "LOSSES", "QUANTILES", "SPLITS", "TARGETS",
           "BoostedInterference", "ColocatedLatency", "ContendedSliceInterference", "CrossValidation", "FeatureSpec",
           "InterferenceData", "InterferenceModel", "LinearInterference", "NoInterference", "TimeSliceInterference",
           "TransformerInterference", "WorkloadSignature", "cross_validate", "evaluate_on", "mae_percent", "make_model",
           "model_kinds", "tune"]
