"""The ERF of one model as the report computed it before it called
:func:`~hpx_analysis.erf.job.erf_job`, and the names other modules import from here.

New code calls :func:`~hpx_analysis.erf.job.erf_job` (files) or
:func:`~hpx_analysis.erf.compute_erf` (in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..io.weights import LoadedModel
from ..settings import RunContext
from .compute import GradCheckpointingError, image_transform
from .job import erf_map, finish_state
from .result import ErfResult
from .settings import (
    CPU_BATCH_SIZE,
    CUDA_BATCH_SIZE,
    DEFAULT_NUM_IMAGES,
    MIN_SIZE,
    PREPROCESS,
    ErfSettings,
    default_batch_size,
    images_label,
)

__all__ = [
    "erf_for_model",
    "default_batch_size",
    "images_label",
    "CPU_BATCH_SIZE",
    "CUDA_BATCH_SIZE",
    "DEFAULT_NUM_IMAGES",
    "MIN_SIZE",
    "GradCheckpointingError",
    "finish_state",
    "PREPROCESS",
    "image_transform",
]


def erf_for_model(
    loaded: LoadedModel,
    items: Sequence,
    *,
    size: int,
    seed: int = 0,
    images: str | Path | None = None,
    device: torch.device | str = "cpu",
    state_dir: str | Path | None = None,
    command: str = "",
) -> ErfResult:
    """The default ERF of ``loaded`` over ``items`` (RepLKNet's protocol), resumable in ``state_dir``.

    Args:
        loaded: the model with its weights record.
        items: image paths or items, or normalized ``(3, H, W)`` tensors.
        size: the side the image files are resized to.
        seed: the seed recorded (and of a random init's description).
        images: the image folder or its label (None: the bundled photographs).
        device: where the model runs.
        state_dir: where the partial state is kept (None: not kept).
        command: the command line recorded.

    Returns:
        ErfResult: the complete result; the caller saves it and calls :func:`finish_state`.
    """
    settings = ErfSettings(size=size, images=images_label(images))
    run = RunContext(device=torch.device(device), out_dir=None if state_dir is None else Path(state_dir), seed=seed,
                     command=command)  # fmt: skip
    return erf_map(loaded, items, settings, run)
