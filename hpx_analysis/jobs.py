"""What the analyses' job functions share: loading the models a job is given, naming the
image source in records, and the common part of every JSON record (settings, fast paths)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from .settings import RunContext, Settings

__all__ = ["loaded_models", "images_label", "record_header", "BUNDLED_IMAGES_LABEL"]

BUNDLED_IMAGES_LABEL = "bundled scikit-image photographs"


def loaded_models(models: Iterable, run: RunContext) -> Iterator:
    """The models of a job, loaded one at a time on ``run.device``.

    Args:
        models: loaded models (:class:`~hpx_analysis.io.weights.LoadedModel`, used as they
            are) or specs (``"NAME[=WEIGHTS]"`` or :class:`~hpx_analysis.io.weights.ModelSpec`,
            loaded with ``run.seed`` after seeding torch with it).
        run: the device and seed.

    Returns:
        Iterator[LoadedModel]: one model at a time (earlier ones can be freed).
    """
    from .io.weights import LoadedModel, load_model

    for model in models:
        if isinstance(model, LoadedModel):
            yield model
        else:
            torch.manual_seed(run.seed)
            yield load_model(model, device=run.device, seed=run.seed)


def images_label(images: str | Path | None) -> str:
    """How an image folder is named in settings and records.

    Args:
        images: the folder, or None for the bundled photographs.

    Returns:
        str: the folder as given, or :data:`BUNDLED_IMAGES_LABEL`.
    """
    return str(images) if images is not None else BUNDLED_IMAGES_LABEL


def record_header(settings: Settings) -> dict:
    """The part of every JSON record that says how it was made.

    Args:
        settings: the analysis's settings.

    Returns:
        dict: ``{"settings": settings.describe(), "fast_paths": fast_path_record()}``.
    """
    from .models.fast import fast_path_record

    return {"settings": settings.describe(), "fast_paths": fast_path_record()}
