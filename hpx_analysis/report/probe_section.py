"""The report's probe section: the probe models with their bundled trained weights on the
global-context probe task (accuracy against distance, ERFs on probe images, kernels,
coverage, truncation with probe labels and the predicted against the measured drop).

The same settings in the quick and the full report (the task is small): every section
folder's analysis, run on the probe models, written into ``probe/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..settings import Hooks, RunContext, Settings

__all__ = [
    "ProbeSectionSettings",
    "ProbeSectionResult",
    "run_probe_section",
    "probe_markdown",
    "PROBE_FIGURE_FILES",
]

PROBE_ERF_IMAGES = 16
PROBE_REL_SIZES = (0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 2.0)
PROBE_FIGURE_FILES = [
    "probe_eval.png",
    "erf.png",
    "kernels_hpx_probe.png",
    "coverage.png",
    "truncation.png",
    "probe_interactions.png",
]


@dataclass(frozen=True)
class ProbeSectionSettings(Settings):
    """The probe section's settings (the same in the quick and the full report).

    Args:
        erf_num_images: probe test images the ERFs average over.
        rel_sizes: the truncation's relative sizes.
        batch_size: images per forward pass of the truncation.
        interaction_num_images: probe test images the interaction distances average over.
        readout_num_images: probe test images of the readout unit's mass share on the square.
    """

    erf_num_images: int = PROBE_ERF_IMAGES
    rel_sizes: tuple[float, ...] = PROBE_REL_SIZES
    batch_size: int = 64
    interaction_num_images: int = 2
    readout_num_images: int = 24


@dataclass
class ProbeSectionResult:
    """Every analysis of the probe section: accuracy against distance (``eval_table``, per
    bin ``bins``), ERFs, kernels, coverage, truncation and its per-distance table, and the
    weights of each model."""

    eval_table: pd.DataFrame
    bins: dict  # model -> {bin: accuracy}
    erf: object
    kernels: list
    coverage: object
    truncation: object
    truncation_by_distance: pd.DataFrame
    weights: dict  # model -> weights description
    interactions: object = None  # ProbeInteractions (report/probe_interactions.py)

    def to_frame(self) -> pd.DataFrame:
        """The accuracy-against-distance table."""
        return self.eval_table


def run_probe_section(
    specs: list[str],
    images: Path | None = None,
    settings: ProbeSectionSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> ProbeSectionResult:
    """The probe section: each analysis's job run on the probe models, written into ``run.out_dir``.

    Args:
        specs: the probe models' specs.
        images: not used (the probe test split is the section's images).
        settings: the section's settings (default :class:`ProbeSectionSettings`).
        run: device, seed, command and output folder.
        hooks: passed to the jobs.

    Returns:
        ProbeSectionResult: every analysis's result.
    """
    from ..coverage import CoverageSettings, coverage_job
    from ..erf.job import erf_job
    from ..erf.settings import ErfSettings
    from ..jobs import loaded_models
    from ..kernels import KernelSettings, kernels_job
    from ..models.metaformer import PROBE_IMG_SIZE
    from ..probe.analysis import PROBE_IMAGES_LABEL, PROBE_SOURCE, probe_image_tensors
    from ..probe.jobs import ProbeEvalSettings, probe_eval_job
    from ..truncation import TruncationSettings, truncation_job

    settings, run, hooks = settings or ProbeSectionSettings(), run or RunContext(), hooks or Hooks()
    loaded = list(loaded_models(specs, run))
    evaluated = probe_eval_job(loaded, None, ProbeEvalSettings(mark_conv_reach=True), run, hooks)
    items = probe_image_tensors(settings.erf_num_images)
    erf = erf_job(loaded, items, ErfSettings(size=PROBE_IMG_SIZE, images=PROBE_IMAGES_LABEL), run, hooks)
    kernels = kernels_job(loaded, KernelSettings(), run, hooks)
    coverage = coverage_job(loaded, CoverageSettings(), run, hooks)
    sweep = TruncationSettings(rel_sizes=settings.rel_sizes, batch_size=settings.batch_size)
    trunc = truncation_job(loaded, PROBE_SOURCE, sweep, run, hooks)
    return ProbeSectionResult(
        evaluated.table,
        evaluated.bins,
        erf,
        kernels,
        coverage,
        trunc,
        trunc.by_distance,
        evaluated.weights,
        _probe_interactions(loaded, settings, run, hooks),
    )


def _probe_interactions(loaded, settings: ProbeSectionSettings, run: RunContext, hooks: Hooks):
    from .probe_interactions import probe_interactions, write_probe_interactions

    result = probe_interactions(loaded, settings.interaction_num_images, settings.readout_num_images, run, hooks)
    if run.out_dir is not None and run.is_main:
        write_probe_interactions(result, run.out_dir)
    return result


def truncation_drops(by_d: pd.DataFrame, task=None) -> pd.DataFrame:
    """Per model and relative size: untruncated and truncated accuracy in the far bin, the
    drop in points, and the predicted reach of the truncated kernel against the far bin.

    Args:
        by_d: the truncation's per-distance table (``truncation_probe.csv``).
        task: the probe task (default :class:`~hpx_analysis.probe.task.ProbeTask`).

    Returns:
        DataFrame: one row per model, stage and relative size.
    """
    from ..probe.evaluate import distance_bins
    from ..probe.intervals import measured_reach, reach_level
    from ..probe.task import ProbeTask

    task = task or ProbeTask()
    level = reach_level(task.num_classes)
    lo, hi = distance_bins(task)[-1]
    far = by_d[(by_d.distance_px >= lo) & (by_d.distance_px <= hi)]
    rows = []
    for model, sub in far.groupby("model", sort=False):
        base = sub[sub.stage == -1]
        base_acc = (base.accuracy * base.n).sum() / base.n.sum()
        all_base = by_d[(by_d.model == model) & (by_d.stage == -1)]
        all_base_acc = (all_base.accuracy * all_base.n).sum() / all_base.n.sum()
        for (stage, r), g in sub[sub.stage >= 0].groupby(["stage", "rel_size"]):
            acc = (g.accuracy * g.n).sum() / g.n.sum()
            allg = by_d[(by_d.model == model) & (by_d.stage == stage) & (by_d.rel_size == r)]
            all_acc = (allg.accuracy * allg.n).sum() / allg.n.sum()
            reach = g.predicted_reach_px.iloc[0]
            rows.append(
                dict(
                    model=model,
                    stage=int(stage),
                    rel_size=r,
                    predicted_reach_px=reach,
                    measured_reach_px=measured_reach(allg, level)["reach_px"],
                    all_accuracy=100 * all_acc,
                    all_drop_points=100 * (all_base_acc - all_acc),
                    far_accuracy=100 * acc,
                    far_drop_points=100 * (base_acc - acc),
                )
            )
    return pd.DataFrame(rows)


def probe_markdown(result: ProbeSectionResult) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        result: the probe section's result.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    from ..probe.evaluate import distance_bins
    from ..probe.intervals import reach_level
    from ..probe.jobs import conv_probe_reach_px
    from ..probe.task import ProbeTask

    task = ProbeTask()
    lo, hi = distance_bins(task)[-1]
    acc = pd.DataFrame(result.bins).T.mul(100).round(1)
    acc.index.name = "model"
    acc.columns = [f"d {c} px" for c in acc.columns]
    drops = truncation_drops(result.truncation_by_distance, task)
    for col in ("all_accuracy", "all_drop_points", "far_accuracy", "far_drop_points"):
        drops[col] = drops[col].round(1)
    weights = "; ".join(f"`{m}`: {w}" for m, w in result.weights.items())
    how = (
        f"**Trained weights** bundled with the package ({weights}). The probe task: a coloured "
        f"{task.square}x{task.square} square in grey noise at Chebyshev distance d = {task.d_min}-{task.d_max} px "
        f"from the readout centre of a {task.size} px image, its colour the label ({task.num_classes} classes, "
        f"chance 25 %); every model is read out at the centre unit of its last feature map. `conv_probe` "
        f"(SepConv 7x7) sees d <= {conv_probe_reach_px(task)} px only (dashed line). Accuracy on the fixed test "
        f"split ({int(result.eval_table.groupby('model').n.sum().iloc[0])} images); ERFs over "
        f"{PROBE_ERF_IMAGES} probe test images at {task.size} px; truncation per relative size with probe "
        f"labels (top-1 = probe accuracy). Predicted reach: the largest d the truncated kernel can "
        f"still carry to the readout (kept taps x stride 4 + the 5x5 depthwise conv + the stem + half the "
        f"square; 1D H_b kernels: not predicted); measured reach: the largest d up to which accuracy stays "
        f"above {100 * reach_level(task.num_classes):.1f} % (halfway between chance and 100 %) at every distance. "
        f"Far bin: {lo}-{hi} px."
    )
    table = (
        "Test accuracy (%) per distance bin:\n\n"
        + _md(acc.reset_index())
        + "\n\nTruncation (stage 0) with probe labels: accuracy (%) over all distances and in the far bin, "
        "and the drop in points from the untruncated model:\n\n" + _md(drops)
    )
    if result.interactions is not None:
        from .probe_interactions import probe_interactions_markdown

        table += "\n\n" + probe_interactions_markdown(result.interactions)
    return how, table


def _md(df: pd.DataFrame) -> str:
    from .markdown import markdown_table

    return markdown_table(df)
