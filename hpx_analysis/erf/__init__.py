"""Effective receptive fields: computation, resumable runs, processes combined, metrics."""

from .compute import (
    METHODS,
    PRECISIONS,
    ErfError,
    ErfInputError,
    ErfModelError,
    ErfResult,
    KeyedInput,
    accumulate_erf,
    centre_unit,
    compute_erf,
    contribution_maps,
    erf_result,
    frozen_for_erf,
    image_key,
    last_feature_map,
    maps_that_fit,
)
from .metrics import erf_metrics, replknet_scale
from .result import METRICS_FILE, ErfComparison
from .run import discard_partial, partial_stem, run_erf
from .state import ErfAccumulator, ErfStateError

__all__ = [
    "METHODS",
    "PRECISIONS",
    "ErfError",
    "ErfInputError",
    "ErfModelError",
    "ErfResult",
    "ErfComparison",
    "METRICS_FILE",
    "compute_erf",
    "last_feature_map",
    "centre_unit",
    "contribution_maps",
    "maps_that_fit",
    "frozen_for_erf",
    "image_key",
    "KeyedInput",
    "accumulate_erf",
    "erf_result",
    "erf_metrics",
    "replknet_scale",
    "run_erf",
    "partial_stem",
    "discard_partial",
    "ErfAccumulator",
    "ErfStateError",
]
