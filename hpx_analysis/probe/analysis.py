"""The probe test split as an image source for the analyses (``--images probe``) and the
truncation sweep read out per distance.

:func:`probe_truncation` is the Fig. 7 analogue with real labels: the standard sweep
(top-1 = probe accuracy in %, agreement, KL; stage -1 untruncated) plus, per stage, relative
size and distance ``d``, the accuracy and the distance up to which the truncated kernel can
still carry the square to the readout unit (``predicted_reach_px``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from ..models import long_conv_mixers
from ..settings import Hooks
from ..truncation import (
    DEFAULT_REL_SIZES,
    TruncationResult,
    TruncationSettings,
    restore_truncations,
    swept_stages,
    truncation_sweep,
)
from .evaluate import accuracy_by_distance, fixed_test_split, probe_batches
from .task import ProbeTask

__all__ = [
    "PROBE_SOURCE",
    "PROBE_IMAGES_LABEL",
    "is_probe_source",
    "images_source",
    "probe_image_tensors",
    "probe_truncation",
    "predicted_reach_px",
]

PROBE_SOURCE = "probe"
PROBE_IMAGES_LABEL = "probe test split (synthetic global-context task, labelled)"
STEM_REACH_PX = 3  # the 7x7 stride-4 stem reads +-3 px around its centre pixel


def images_source(value: str | os.PathLike | None) -> str | Path | None:
    """An ``--images`` value as typed, as the jobs take it: the exact word ``probe`` becomes
    the string that names the probe test split, any other spelling (``./probe``, ``probe/``,
    a full path) a folder path.

    Args:
        value: the value as typed (or None).

    Returns:
        str | Path | None: :data:`PROBE_SOURCE`, a path, or None.

    Raises:
        ValueError: ``probe`` is typed while a file or folder named ``probe`` exists in the
            working directory (the message says how to name either).
    """
    if value is None or isinstance(value, Path):
        return value
    if str(value) != PROBE_SOURCE:
        return Path(value)
    if Path(PROBE_SOURCE).exists():
        raise ValueError(
            f"--images {PROBE_SOURCE} names the probe task's test split, but {Path.cwd() / PROBE_SOURCE} "
            f"exists too: for that folder write ./{PROBE_SOURCE}, for the test split run where no "
            f"'{PROBE_SOURCE}' exists"
        )
    return PROBE_SOURCE


def is_probe_source(images) -> bool:
    """Whether an image source names the probe test split: only the string ``"probe"`` does
    (a :class:`~pathlib.Path` is always a folder, whatever its name; the command line turns
    what is typed into one or the other with :func:`images_source`).

    Args:
        images: the image source given to a job (str, path or None).

    Returns:
        bool: True for the probe test split.
    """
    return isinstance(images, str) and images == PROBE_SOURCE


def probe_image_tensors(num_images: int | None = None) -> list[torch.Tensor]:
    """The fixed test split's images as normalised ``(3, 64, 64)`` tensors (ERF input)."""
    batch = fixed_test_split(ProbeTask(), num_images)
    return list(batch.images)


def predicted_reach_px(model, stage: int, rel_size: float, task: ProbeTask | None = None) -> float:
    """The largest ``d`` (px, Chebyshev) at which the square can still reach the readout unit
    through stage ``stage``'s truncated kernel: kept taps ``floor((r n - 1) / 2)`` times the
    stage's stride, plus the mixer's short depthwise conv, the stem's reach and half the square.
    Assumes the other stages add no reach (one-stage probe models)."""
    task = task or ProbeTask()
    stride = 2 ** (stage + 2)
    n = model.feature_sizes[stage][0]
    mixers = [m for s, _, m in long_conv_mixers(model) if s == stage]
    short = 0
    if mixers and hasattr(mixers[0], "depthwise_conv"):
        short = mixers[0].depthwise_conv.weight.shape[-1] // 2
    elif mixers and mixers[0].kernel_ndim == 1:
        return float("nan")  # raster 1D kernels: reach is not a square window
    taps = int((rel_size * n - 1) // 2)
    return float(stride * (taps + short) + STEM_REACH_PX + task.square // 2)


def probe_truncation(
    loaded,
    *,
    rel_sizes: Sequence[float] = DEFAULT_REL_SIZES,
    stages: Sequence[int] | None = None,
    shape: str = "square",
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    num_images: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[TruncationResult, pd.DataFrame]:
    """The truncation sweep of a probe (or any 64 px HyenaPixel-family) model on the probe test
    split, and its per-distance table ``(model, stage, rel_size, distance_px, accuracy, n,
    predicted_reach_px, weights)``; stage -1 is the untruncated model."""
    model = loaded.model
    stage_ids = swept_stages(model, stages, loaded.name)
    task = ProbeTask()
    batch = fixed_test_split(task, num_images)
    start = time.perf_counter()
    result = truncation_sweep(
        model,
        probe_batches(batch, batch_size, device),
        TruncationSettings(rel_sizes=tuple(rel_sizes), stages=tuple(stage_ids), shape=shape),
        Hooks(progress=on_batch) if on_batch is not None else None,
        name=loaded.name,
    )
    result.model, result.weights, result.weights_kind = loaded.name, loaded.weights, loaded.weights_kind
    result.run = {"images_skipped_by_this_process": [], "seconds": round(time.perf_counter() - start, 3)}
    tables = []
    with restore_truncations(model), torch.no_grad():
        base = accuracy_by_distance(model, batch, name=loaded.name, weights=loaded.weights)
        tables.append(base.assign(stage=-1, rel_size=float("nan"), predicted_reach_px=float("nan")))
        for s in stage_ids:
            mixers = [m for st, _, m in long_conv_mixers(model) if st == s]
            for r in rel_sizes:
                for m in mixers:
                    m.set_truncation(float(r), shape)
                try:
                    t = accuracy_by_distance(model, batch, name=loaded.name, weights=loaded.weights)
                finally:
                    for m in mixers:
                        m.set_truncation(None)
                tables.append(t.assign(stage=s, rel_size=float(r), predicted_reach_px=predicted_reach_px(model, s, r)))
    cols = ["model", "stage", "rel_size", "distance_px", "accuracy", "n", "predicted_reach_px", "weights"]
    return result, pd.concat(tables, ignore_index=True)[cols]
