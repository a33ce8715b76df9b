"""The report's only contact with the ERF code: the metric names its tables show, the
settings of its ERF runs and one function that computes and writes the ERFs of several
models. The report's ERF section and its probe section both call :func:`erf_section`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..settings import RunContext, Settings

__all__ = ["ERF_TABLE_METRICS", "ErfSectionSettings", "erf_section"]

# The ERF metrics (columns of erf_metrics.csv) that report.md shows, in this order.
ERF_TABLE_METRICS = (
    "square_side_t0.2",
    "square_area_t0.2",
    "square_side_t0.5",
    "square_area_t0.5",
    "r50_px",
    "r90_px",
    "anisotropy",
    "dead_fraction",
)


@dataclass(frozen=True)
class ErfSectionSettings(Settings):
    """The report's ERF settings.

    Args:
        size: input side in px.
        num_images: images averaged over.
    """

    size: int = 256
    num_images: int = 3


def erf_section(models: Iterable, items: Sequence, images: str | Path | None, size: int, run: RunContext):
    """The ERFs of ``models`` over ``items``, each saved into ``run.out_dir`` with
    ``erf_metrics.csv`` and the figure.

    Args:
        models: specs or loaded models (:func:`~hpx_analysis.jobs.loaded_models`).
        items: image items or image tensors.
        images: the image folder or how the images are named in the records.
        size: input side in px.
        run: device, seed, command and output folder.

    Returns:
        ErfComparison: one result per model.
    """
    from ..erf import ErfComparison
    from ..erf.analysis import erf_for_model, finish_state
    from ..jobs import loaded_models
    from ..plotting import files

    comparison = ErfComparison()
    for m in loaded_models(models, run):
        result = erf_for_model(
            m,
            items,
            size=size,
            seed=run.seed,
            images=images,
            device=run.device,
            state_dir=run.out_dir,
            command=run.command,
        )
        result.save(run.out_dir)
        finish_state(run.out_dir, result)
        comparison.results.append(result)
    comparison.save_table(run.out_dir)
    files.save_erf_figure(comparison, run.out_dir)
    return comparison
