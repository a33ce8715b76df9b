"""Effective receptive fields: computation, resumable runs, processes combined, metrics.

Two entry points: :func:`compute_erf` (in memory) and :func:`~hpx_analysis.erf.job.erf_job`
(every map of every model, with its files); both take an :class:`ErfSettings`.
"""

from .compute import (
    ErfError,
    ErfInputError,
    ErfModelError,
    ErfResult,
    GradCheckpointingError,
    KeyedInput,
    PassInfo,
    accumulate_erf,
    centre_unit,
    compute_erf,
    contribution_maps,
    erf_result,
    frozen_for_erf,
    image_key,
    image_transform,
    last_feature_map,
    maps_that_fit,
)
from .job import ErfInterrupted, ErfModel, erf_job, erf_map, finish_state
from .metrics import erf_metrics, replknet_scale
from .result import METRICS_FILE, ErfComparison
from .run import discard_partial, partial_stem, run_erf
from .settings import METHODS, PRECISIONS, ErfFigureSettings, ErfSettings, map_grid
from .state import ErfAccumulator, ErfStateError
from .unit import ErfUnit

__all__ = [
    "METHODS",
    "PRECISIONS",
    "ErfError",
    "ErfInputError",
    "ErfModelError",
    "GradCheckpointingError",
    "ErfResult",
    "ErfComparison",
    "ErfSettings",
    "ErfFigureSettings",
    "ErfUnit",
    "map_grid",
    "METRICS_FILE",
    "compute_erf",
    "erf_job",
    "erf_map",
    "ErfModel",
    "ErfInterrupted",
    "finish_state",
    "last_feature_map",
    "centre_unit",
    "contribution_maps",
    "maps_that_fit",
    "frozen_for_erf",
    "image_key",
    "image_transform",
    "KeyedInput",
    "PassInfo",
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
