"""The settings of an ERF: one frozen :class:`ErfSettings` per map, and how the figures look.

:class:`ErfSettings` holds every option of one ERF map (size, method, precision, unit,
preprocessing, batching, metrics); :meth:`ErfSettings.describe` is the record written beside
the result (``erf_settings`` in ``erf_<label>.json``) and :meth:`ErfSettings.resume_guard`
the part of it a resumed run must share with the state it continues (model, weights, size,
method, precision, integration steps of integrated gradients, images, unit, preprocessing).
A job over several sizes or units takes one settings object per map (:func:`map_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..jobs import BUNDLED_IMAGES_LABEL as BUNDLED_IMAGES
from ..jobs import images_label
from ..settings import Settings
from .unit import ErfUnit

__all__ = [
    "ErfSettings",
    "ErfFigureSettings",
    "map_grid",
    "METHODS",
    "PRECISIONS",
    "PREPROCESS",
    "BUNDLED_IMAGES",
    "DEFAULT_NUM_IMAGES",
    "MIN_SIZE",
    "CPU_BATCH_SIZE",
    "CUDA_BATCH_SIZE",
    "default_batch_size",
    "images_label",
]

METHODS = ("grad", "saliency", "integrated_gradients")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
PREPROCESS = ("squash", "timm-eval")
DEFAULT_NUM_IMAGES = 50
# a CPU is busy with one image (batches are slower per image there); on an H100, batch 8 at
# 1024 px took hpx_former_s18 from 61 to 20 ms per image with 13.2 GiB (smaller GPUs split it)
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 1, 8
MIN_SIZE = 32
# the keys of describe() that a resumed run must share with its saved state (besides the
# model, the weights and the unit)
_GUARDED = ("size", "method", "precision", "ig_steps", "images")


def default_batch_size(device: torch.device | str) -> int:
    """Images per pass when none is given.

    Args:
        device: where the ERF runs.

    Returns:
        int: :data:`CUDA_BATCH_SIZE` on CUDA, :data:`CPU_BATCH_SIZE` elsewhere.
    """
    return CUDA_BATCH_SIZE if torch.device(device).type == "cuda" else CPU_BATCH_SIZE


def _error(message: str) -> Exception:
    from .compute import ErfError

    return ErfError(message)


@dataclass(frozen=True)
class ErfSettings(Settings):
    """What one ERF map is computed with.

    Args:
        size: side the image files are resized to (px); None: tensors as given, or with
            ``preprocess="timm-eval"`` the model's own input size.
        method: ``"grad"``, ``"saliency"`` or ``"integrated_gradients"`` (:data:`METHODS`).
        precision: ``"fp32"``, ``"tf32"``, ``"bf16"`` or ``"fp16"`` (:data:`PRECISIONS`).
        ig_steps: integration steps of integrated gradients.
        unit: the output unit and protocol (:class:`~hpx_analysis.erf.unit.ErfUnit`).
        preprocess: how image files become tensors: ``"squash"`` (resize the whole image to
            ``size``) or ``"timm-eval"`` (the model's timm data config).
        batch_size: images per pass; None: :func:`default_batch_size` of the device.
        grad_checkpointing: recompute activations in the backward pass (same matrix).
        compile_blocks: run the model's repeated blocks through ``torch.compile``.
        full_metrics: also the theoretical receptive field, the extra metrics, the
            standard-deviation map and each metric's spread across images.
        save_per_image: keep every image's map too (implies ``full_metrics``).
        images: how the images are named in the records.
        check_precision: with a reduced precision, compute the first batch in float32 too
            and record the deviation.
        loader_threads: threads that read image files ahead (None: none on the CPU, up to
            4 on an accelerator).
    """

    size: int | None = None
    method: str = "grad"
    precision: str = "fp32"
    ig_steps: int = 32
    unit: ErfUnit = field(default_factory=ErfUnit)
    preprocess: str = "squash"
    batch_size: int | None = None
    grad_checkpointing: bool = False
    compile_blocks: bool = False
    full_metrics: bool = False
    save_per_image: bool = False
    images: str = BUNDLED_IMAGES
    check_precision: bool = True
    loader_threads: int | None = None

    def __post_init__(self):
        for name, value, allowed in (
            ("ERF method", self.method, METHODS),
            ("precision", self.precision, PRECISIONS),
            ("preprocessing", self.preprocess, PREPROCESS),
        ):
            if value not in allowed:
                raise _error(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise _error(f"batch size must be at least 1, got {self.batch_size}")
        if self.ig_steps < 1:
            raise _error(f"ig_steps must be at least 1, got {self.ig_steps}")
        if not isinstance(self.unit, ErfUnit):
            raise TypeError(
                f"unit must be an ErfUnit (e.g. ErfUnit(stage=0) or ErfUnit(layer='stages.0')), "
                f"got the {type(self.unit).__name__} {self.unit!r}"
            )

    @property
    def with_full_metrics(self) -> bool:
        """Whether the extra metrics are computed (``full_metrics`` or ``save_per_image``)."""
        return self.full_metrics or self.save_per_image

    def describe(self) -> dict:
        """The settings as the JSON record (``erf_settings`` in ``erf_<label>.json``).

        Returns:
            dict: field name -> value, the unit as its non-default choices
            (:meth:`~hpx_analysis.erf.unit.ErfUnit.describe`).
        """
        out = super().describe()
        out["unit"] = self.unit.describe()
        return out

    def resume_guard(self, model: str, weights: str) -> dict:
        """What a resumed run must share with its saved state.

        Args:
            model: the model's canonical name.
            weights: a stable description of its weights.

        Returns:
            dict: model, weights, size, method, precision, ig_steps (None unless integrated
            gradients), images, the unit's non-default choices and the preprocessing when
            not ``"squash"``.
        """
        record = self.describe()
        guard = {"model": model, "weights": weights, **{key: record[key] for key in _GUARDED}}
        if self.method != "integrated_gradients":
            guard["ig_steps"] = None
        guard.update(self.unit.describe())
        if self.preprocess != "squash":
            guard["preprocess"] = self.preprocess
        return guard

    def unit_record(self) -> dict:
        """The unit and preprocessing as written in a result (empty for the defaults).

        Returns:
            dict: :meth:`ErfUnit.describe` plus ``preprocess`` when not ``"squash"``.
        """
        out = self.unit.describe()
        if self.preprocess != "squash":
            out["preprocess"] = self.preprocess
        return out


def map_grid(base: ErfSettings, sizes: Sequence[int | None], units: Sequence[ErfUnit]) -> list[ErfSettings]:
    """One settings object per map of a job: every size with every unit, sizes outermost.

    Args:
        base: the settings all maps share.
        sizes: the input sizes.
        units: the output units.

    Returns:
        list[ErfSettings]: ``base`` with each (size, unit).
    """
    return [base.replace(size=size, unit=unit) for size in sizes for unit in units]


@dataclass(frozen=True)
class ErfFigureSettings:
    """How a job's figures look.

    Args:
        scale: ``"log"`` (RepLKNet's ``log10(x + 1)``), ``"linear"`` or ``"power:G"``.
        cmap: the matplotlib colour map.
        overlay: an image to draw the maps over (``erf_overlay.png``), or None.
    """

    scale: str = "log"
    cmap: str = "RdYlGn"
    overlay: Path | None = None

    @property
    def plot_scale(self) -> str:
        """The scale's name in :mod:`hpx_analysis.plotting.erf` (``log`` is ``replknet`` there)."""
        return "replknet" if self.scale == "log" else self.scale
