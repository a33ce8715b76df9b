"""One model's ERF as the commands and the report compute it: the settings that guard a
resumed run, the record written beside the matrix, and the run itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..execution.distributed import DistContext
from ..io.weights import LoadedModel
from .compute import ErfError
from .geometry import unit_position
from .result import ErfResult
from .run import discard_partial, partial_stem, run_erf
from .unit import ErfUnit

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

PREPROCESS = ("squash", "timm-eval")

DEFAULT_NUM_IMAGES = 50
# a CPU is busy with one image (batches are slower per image there); on an H100, batch 8 at
# 1024 px took hpx_former_s18 from 61 to 20 ms per image with 13.2 GiB (smaller GPUs split it)
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 1, 8
MIN_SIZE = 32


class GradCheckpointingError(ValueError):
    """The model cannot recompute its activations (no ``set_grad_checkpointing``)."""


def default_batch_size(device: torch.device | str) -> int:
    return CUDA_BATCH_SIZE if torch.device(device).type == "cuda" else CPU_BATCH_SIZE


def images_label(images: str | Path | None) -> str:
    """How the images are named in settings and records."""
    return str(images) if images is not None else "bundled scikit-image photographs"


def image_transform(model, preprocess: str, size: int | None):
    """How image files become tensors: ``"squash"`` (None: the default, RepLKNet's resize of
    the whole image to ``size`` x ``size``, ImageNet mean/std) or ``"timm-eval"`` (the
    model's timm data config: input size, crop percentage, interpolation, mean and std;
    ``size``, when given, replaces the input size)."""
    if preprocess not in PREPROCESS:
        raise ErfError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESS)}")
    if preprocess == "squash":
        return None
    from ..io.images import model_eval_transform

    return model_eval_transform(model, size=size)


def _input_side(model, transform, size: int | None) -> tuple[int, int]:
    """The side of the model inputs: ``size``, else the one of the timm data config."""
    if size is not None:
        return (int(size), int(size))
    from timm.data import resolve_data_config

    return tuple(int(v) for v in resolve_data_config(model=model)["input_size"][1:])


def erf_for_model(
    loaded: LoadedModel,
    items: Sequence,
    *,
    size: int,
    seed: int = 0,
    method: str = "grad",
    precision: str = "fp32",
    ig_steps: int = 32,
    images: str | Path | None = None,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    state_dir: str | Path | None = None,
    resume: bool = False,
    ctx: DistContext | None = None,
    grad_checkpointing: bool = False,
    compile_blocks: bool = False,
    command: str = "",
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    unit: ErfUnit | None = None,
    preprocess: str = "squash",
    label: str | None = None,
    full_metrics: bool = False,
    save_per_image: bool = False,
) -> ErfResult:
    """The ERF of ``loaded`` over ``items`` with its model record and run record attached.

    ``state_dir``: where the partial accumulation is kept while it runs (resumable with
    ``resume``); it is removed once the result is complete. Under ``torchrun`` every rank
    returns the full result. ``unit``: the output unit and protocol (default: RepLKNet's on
    the last feature map); ``preprocess``: see :func:`image_transform`; ``label``: the run
    label in file names (default: the model name). The unit's position in input pixels is
    recorded and the metrics are measured around it. ``full_metrics``: also find the unit's
    theoretical receptive field and compute the extra metrics (:func:`~hpx_analysis.erf.metrics.erf_metrics`), the
    standard-deviation map over images and each metric's spread across images
    (:mod:`~hpx_analysis.erf.spread`); ``save_per_image``: keep the per-image maps too."""
    unit = unit or ErfUnit()
    label = label or loaded.name
    transform = image_transform(loaded.model, preprocess, size)
    ctx = ctx or DistContext()
    batch_size = batch_size or default_batch_size(device)
    if grad_checkpointing:
        if not hasattr(loaded.model, "set_grad_checkpointing"):
            raise GradCheckpointingError(f"{loaded.name} does not support gradient checkpointing")
        loaded.model.set_grad_checkpointing(True)
    # a stable description of the weights guards resuming (the full text, which may carry a
    # changing download error, is in the record's "weights")
    weights_key = loaded.weights if loaded.weights_kind != "random" else f"random init (seed {seed})"
    settings = {
        "model": loaded.name,
        "weights": weights_key,
        "size": size,
        "method": method,
        "precision": precision,
        "ig_steps": ig_steps if method == "integrated_gradients" else None,
        "images": images_label(images),
        **unit.describe(),
    }
    if preprocess != "squash":
        settings["preprocess"] = preprocess
    stem = partial_stem(state_dir, label) if state_dir is not None else None
    # the unit's position in input pixels: the radial and centre-of-mass metrics are measured
    # around it (an even grid's centre unit, or a strided stem's, sits off the image centre)
    side = _input_side(loaded.model, transform, size)
    position = unit_position(loaded.model, side, unit)
    per_image = trf = None
    if full_metrics or save_per_image:
        from .geometry import theoretical_rf
        from .spread import PerImage

        trf = theoretical_rf(loaded.model, side, unit, seed=seed)
        per_image = PerImage(keep=save_per_image, centre=position["centre_px"])
    result = run_erf(
        loaded.model,
        items,
        settings=settings,
        state_stem=stem,
        resume=resume,
        ctx=ctx,
        size=size,
        batch_size=batch_size,
        method=method,
        precision=precision,
        device=device,
        ig_steps=ig_steps,
        compile_blocks=compile_blocks,
        progress=progress,
        on_start=on_start,
        unit=unit,
        transform=transform,
        per_image=per_image,
    )
    result.name = label if label != loaded.name else ""
    result.unit = unit.describe()
    if preprocess != "squash":
        result.unit["preprocess"] = preprocess
    result.position = position
    if per_image is not None:
        result.trf = {k: trf[k] for k in ("pixels", "rows", "cols")}
        result.full_metrics = True
        result.per_image, result.std, result.spread = per_image, per_image.std(), per_image.spread()
    result.model, result.weights, result.weights_kind = loaded.name, loaded.weights, loaded.weights_kind
    # folders and links the image listing could not read (hpx_analysis.io.images.ImageList)
    listing = [{"key": path, "reason": reason} for path, reason in getattr(items, "skipped", ())]
    result.skipped = [*result.skipped, *listing]
    result.run = {
        "size": size,
        "batch_size": batch_size,
        "seed": seed,
        "images_source": settings["images"],
        "grad_checkpointing": grad_checkpointing,
        "compile": compile_blocks,
        "world_size": ctx.world_size,
        "command": command,
    }
    return result


def finish_state(state_dir: str | Path | None, result: ErfResult) -> None:
    """Remove the partial accumulation of ``result``'s run (after its files are written)."""
    if state_dir is not None:
        discard_partial(partial_stem(state_dir, result.label))
