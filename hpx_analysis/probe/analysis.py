"""The probe test split as an image source for the analyses (``--images probe``), the
receptive-field reach a probe's architecture allows, and the truncation sweep read out per
distance.

:func:`probe_truncation` is the Fig. 7 analogue with real labels: the standard sweep
(top-1 = probe accuracy in %, agreement, KL; stage -1 untruncated; top-5 left out for tasks of
fewer than six classes, where it is trivially high) plus, per stage, relative size and
distance ``d``, the accuracy with its 95 % Wilson interval and the distance up to which the
truncated model can still carry the square to the readout unit (``predicted_reach_px``).
:func:`far_truncation` pools that table over the far quarter of distances: the per-stage
truncation figure of the two-stage probes, whose known answers :data:`FAR_STAGE` states.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from ..settings import Hooks
from ..truncation import (
    DEFAULT_REL_SIZES,
    TruncationResult,
    TruncationSettings,
    restore_truncations,
    swept_stages,
    truncation_sweep,
)
from .evaluate import accuracy_truncated, far_quarter_accuracy, iter_test_split, probe_batches
from .task import ProbeTask, probe_task_for

__all__ = [
    "PROBE_SOURCE",
    "PROBE_IMAGES_LABEL",
    "FAR_STAGE",
    "TRUNCATION_PROBE_COLUMNS",
    "is_probe_source",
    "images_source",
    "probe_image_tensors",
    "ProbeImages",
    "images_for_model",
    "receptive_radius_px",
    "predicted_reach_px",
    "probe_truncation",
    "far_truncation",
]

PROBE_SOURCE = "probe"
PROBE_IMAGES_LABEL = "probe test split (synthetic global-context task, labelled)"
STEM_REACH_PX = 3  # the 7x7 stride-4 stem reads +-3 px around its centre pixel
TOP5_MIN_CLASSES = 6  # top-5 accuracy is reported only for tasks with more classes than 5
# The two-stage hybrids' known answer: the one stage whose truncation must drop the far
# quarter of distances to chance (the other stage's SepConv has nothing to truncate).
FAR_STAGE = {"c_hpx_probe_s2": 1, "hpx_c_probe_s2": 0}
TRUNCATION_PROBE_COLUMNS = [
    "model", "stage", "rel_size", "distance_px", "accuracy", "n", "ci_low", "ci_high", "predicted_reach_px", "weights",
]  # fmt: skip


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


def probe_image_tensors(num_images: int | None = None, task: ProbeTask | None = None) -> list[torch.Tensor]:
    """The fixed test split's images as normalised ``(3, S, S)`` tensors (ERF input).

    Args:
        num_images: the first this many images (default: the whole split).
        task: the probe task; ``probe_task_for(model)`` gives a model's (default: 64 px).

    Returns:
        A list of image tensors of the task's size.
    """
    return [img for block in iter_test_split(task or ProbeTask(), num_images=num_images) for img in block.images]


@dataclass(frozen=True)
class ProbeImages:
    """The probe test split as an image source resolved per model: each model gets its own
    task's images (``probe_task_for(model)``: 128 px for the two-stage probes, 64 px for the
    one-stage ones), rendered when asked for.

    Args:
        num_images: how many test images each model gets (the first of its split).
    """

    num_images: int

    def __len__(self) -> int:
        return self.num_images

    def size_for(self, model: torch.nn.Module) -> int:
        """The side (px) of ``model``'s probe images."""
        return probe_task_for(model).size

    def items_for(self, model: torch.nn.Module) -> list[torch.Tensor]:
        """``model``'s probe test images as normalised ``(3, S, S)`` tensors."""
        return probe_image_tensors(self.num_images, probe_task_for(model))


def images_for_model(images, model: torch.nn.Module, size: int | None) -> tuple[Sequence, int | None]:
    """The inputs and input size of one model: a :class:`ProbeImages` source gives the model's
    own probe images and size, any other inputs stay as given.

    Args:
        images: a :class:`ProbeImages` source, or image paths/items/tensors.
        model: the model the inputs are for.
        size: the size asked for (kept unless the source is the probe split).

    Returns:
        The inputs and the size.
    """
    if isinstance(images, ProbeImages):
        return images.items_for(model), images.size_for(model)
    return images, size


def _mixer_reach_units(mixer, rel_size: float | None) -> float:
    """How far (feature-map units, Chebyshev) one token mixer reads around a unit."""
    if hasattr(mixer, "set_truncation"):
        if mixer.kernel_ndim == 1:
            return math.nan  # raster 1D kernels: reach is not a square window
        short = mixer.depthwise_conv.weight.shape[-1] // 2 if hasattr(mixer, "depthwise_conv") else 0
        half = max(mixer._long_filter().kernel_shape) // 2
        if rel_size is not None:
            n = max(mixer.feature_size)
            half = min(half, max(int(math.floor((rel_size * n - 1) / 2 + 1e-9)), 0))
        return float(short + half)
    if hasattr(mixer, "dwconv"):
        return float(mixer.kernel_size // 2)
    return math.inf  # attention and pooling-free global mixers


def receptive_radius_px(model, truncation: dict[int, float] | None = None) -> float:
    """The readout unit's receptive field as a Chebyshev radius in input pixels, around the
    readout centre: the stem's 3 px, each block's mixer reach times its stage's stride, and
    each merging conv's reach times the stride it reads at (MetaFormer layout; MLPs are
    pointwise).

    Args:
        model: a :class:`HyenaMetaFormer` (stem 7x7 stride 4, merges stride 2).
        truncation: ``{stage: rel_size}`` of long kernels truncated to a centred square window.

    Returns:
        The radius in px (``inf`` with attention, NaN with 1D raster kernels). For
        ``conv_probe_s2``: 3 + 3 x 4 + 1 x 4 + 3 x 8 = 43.
    """
    truncation = truncation or {}
    radius = float(STEM_REACH_PX)
    for i, stage in enumerate(model.stages):
        if i > 0:
            radius += (model.downsample_layers[i].conv.kernel_size[0] // 2) * 2 ** (i + 1)
        for block in stage:
            radius += 2 ** (i + 2) * _mixer_reach_units(block.token_mixer, truncation.get(i))
    return radius


def predicted_reach_px(model, stage: int, rel_size: float, task: ProbeTask | None = None) -> float:
    """The largest ``d`` (px, Chebyshev) at which the square can still reach the readout unit
    with stage ``stage``'s long kernels truncated to ``rel_size``: the receptive radius
    (:func:`receptive_radius_px`) plus half the square.

    Args:
        model: the probe model.
        stage: the truncated stage.
        rel_size: the relative window size.
        task: the probe task (for the square's size; default: the 64 px task).

    Returns:
        The distance in px.
    """
    return receptive_radius_px(model, {stage: rel_size}) + (task or ProbeTask()).square // 2


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
    """The truncation sweep of a probe model on its task's test split (the size comes from the
    model), and its per-distance table.

    Args:
        loaded: a loaded model (``.model``, ``.name``, ``.weights``, ``.weights_kind``).
        rel_sizes, stages, shape: the sweep (as in :func:`~hpx_analysis.truncation.truncation_sweep`).
        batch_size, device: evaluation batches.
        num_images: the first this many test images (default: all).
        on_batch: called with the number of images after each batch.

    Returns:
        The sweep's result (top-5 left out below six classes) and the table
        :data:`TRUNCATION_PROBE_COLUMNS`; stage -1 is the untruncated model.
    """
    model = loaded.model
    stage_ids = swept_stages(model, stages, loaded.name)
    task = probe_task_for(model)
    start = time.perf_counter()
    batches = probe_batches(iter_test_split(task, num_images=num_images), batch_size, device)
    result = truncation_sweep(
        model,
        batches,
        TruncationSettings(rel_sizes=tuple(rel_sizes), stages=tuple(stage_ids), shape=shape),
        Hooks(progress=on_batch) if on_batch is not None else None,
        name=loaded.name,
    )
    if task.num_classes < TOP5_MIN_CLASSES:
        result.table = result.table[result.table.metric != "top5"].reset_index(drop=True)
        result.notes.append(f"top-5 left out: the task has {task.num_classes} classes")
    result.model, result.weights, result.weights_kind = loaded.name, loaded.weights, loaded.weights_kind
    result.run = {"images_skipped_by_this_process": [], "seconds": round(time.perf_counter() - start, 3)}
    kw = dict(name=loaded.name, weights=loaded.weights)
    split = partial(iter_test_split, task, num_images=num_images)  # re-rendered per setting
    with restore_truncations(model), torch.no_grad():
        base = accuracy_truncated(model, split, None, **kw)
        tables = [base.assign(stage=-1, rel_size=math.nan, predicted_reach_px=math.nan)]
        for s in stage_ids:
            for r in rel_sizes:
                t = accuracy_truncated(model, split, (s, r), shape, **kw)
                reach = predicted_reach_px(model, s, r, task)
                tables.append(t.assign(stage=s, rel_size=float(r), predicted_reach_px=reach))
    return result, pd.concat(tables, ignore_index=True)[TRUNCATION_PROBE_COLUMNS]


def far_truncation(by_distance: pd.DataFrame, task: ProbeTask) -> pd.DataFrame:
    """Far-quarter accuracy per model, stage and relative size (the per-stage truncation
    figure's data: a panel per model, a line per stage against ``rel_size``).

    Args:
        by_distance: :func:`probe_truncation`'s per-distance table (any number of models).
        task: the task the table was measured on (its far quarter).

    Returns:
        One row per ``(model, stage, rel_size)``: ``accuracy, correct, n, ci_low, ci_high``
        (Wilson 95 %); stage -1 is the untruncated model, whose row the truncated lines start from.
    """
    rows = []
    for (model, stage, rel), group in by_distance.groupby(["model", "stage", "rel_size"], dropna=False, sort=True):
        far = far_quarter_accuracy(group, task)
        rows.append({"model": model, "stage": int(stage), "rel_size": float(rel), **far})
    return pd.DataFrame(rows).drop(columns="distances")
