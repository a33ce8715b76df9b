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
import torch

__all__ = ["PROBE_MODELS", "ProbeSectionResult", "run_probe_section", "probe_markdown", "PROBE_FIGURE_FILES"]

PROBE_MODELS = ("hpx_probe", "hb_probe", "conv_probe", "attn_probe")
PROBE_ERF_IMAGES = 16
PROBE_REL_SIZES = (0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 2.0)
PROBE_TRUNCATION_MODELS = ("hpx_probe", "hb_probe")
PROBE_FIGURE_FILES = ["probe_eval.png", "erf.png", "kernels_hpx_probe.png", "coverage.png", "truncation.png"]


@dataclass
class ProbeSectionResult:
    eval_table: pd.DataFrame
    bins: dict  # model -> {bin: accuracy}
    erf: object
    kernels: list
    coverage: object
    truncation: object
    truncation_by_distance: pd.DataFrame
    weights: dict  # model -> weights description

    def to_frame(self) -> pd.DataFrame:
        return self.eval_table


def run_probe_section(specs: list[str], out_dir: Path, device: torch.device, seed: int = 0) -> ProbeSectionResult:
    from ..coverage import CoverageResult, model_coverage
    from ..erf import ErfComparison
    from ..erf.analysis import erf_for_model, finish_state
    from ..io.weights import load_model
    from ..kernels import kernel_maps
    from ..models.metaformer import PROBE_IMG_SIZE
    from ..plotting import files
    from ..probe.analysis import PROBE_IMAGES_LABEL, probe_image_tensors, probe_truncation
    from ..probe.evaluate import accuracy_by_distance, bin_accuracy, distance_bins, fixed_test_split
    from ..probe.task import ProbeTask
    from ..truncation import TruncationComparison, truncation_settings

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = ProbeTask()
    batch = fixed_test_split(task)
    loaded = []
    for spec in specs:
        torch.manual_seed(seed)
        loaded.append(load_model(spec, device=device, seed=seed))
    tables = [accuracy_by_distance(m.model, batch, name=m.name, weights=m.weights) for m in loaded]
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out_dir / "probe_eval.csv", index=False)
    files.save_probe_figure(table, out_dir, rf_px={"conv_probe": 15 + task.square // 2})
    bins = {t.model.iloc[0]: bin_accuracy(t, distance_bins(task)) for t in tables}

    items = probe_image_tensors(PROBE_ERF_IMAGES)
    erf = ErfComparison()
    for m in loaded:
        r = erf_for_model(m, items, size=PROBE_IMG_SIZE, seed=seed, images=PROBE_IMAGES_LABEL, device=device,
                          state_dir=out_dir)  # fmt: skip
        r.save(out_dir)
        finish_state(out_dir, r)
        erf.results.append(r)
    erf.save_table(out_dir)
    files.save_erf_figure(erf, out_dir)

    long = [m for m in loaded if m.name in PROBE_TRUNCATION_MODELS]
    kernels = [kernel_maps(m.model, name=m.name, weights=m.weights) for m in long]
    for r in kernels:
        r.save(out_dir)
        files.save_kernel_figure(r, out_dir)
    coverage = CoverageResult.concat([model_coverage(m.model, name=m.name, weights=m.weights) for m in loaded])
    coverage.save(out_dir)
    files.save_coverage_figure(coverage, out_dir)

    results, by_distance = [], []
    for m in long:
        r, d = probe_truncation(m, rel_sizes=PROBE_REL_SIZES, device=device)
        results.append(r)
        by_distance.append(d)
    trunc = TruncationComparison(
        results,
        truncation_settings(
            rel_sizes=PROBE_REL_SIZES, shape="square", stages=None, batch_size=64, crop_pct=None, size=None,
            seed=seed, world_size=1, images=PROBE_IMAGES_LABEL, num_images=len(batch), labels=True,
            no_labels_reason=None,
        ),
    )  # fmt: skip
    trunc.save(out_dir)
    files.save_truncation_figure(trunc, out_dir)
    by_d = pd.concat(by_distance, ignore_index=True)
    by_d.to_csv(out_dir / "truncation_probe.csv", index=False)
    weights = {m.name: m.weights for m in loaded}
    return ProbeSectionResult(table, bins, erf, kernels, coverage, trunc, by_d, weights)


def truncation_drops(by_d: pd.DataFrame, task=None) -> pd.DataFrame:
    """Per model and relative size: untruncated and truncated accuracy in the far bin, the
    drop in points, and the predicted reach of the truncated kernel against the far bin."""
    from ..probe.evaluate import distance_bins
    from ..probe.task import ProbeTask

    task = task or ProbeTask()
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
                    measured_reach_px=measured_reach_px(allg),
                    all_accuracy=100 * all_acc,
                    all_drop_points=100 * (all_base_acc - all_acc),
                    far_accuracy=100 * acc,
                    far_drop_points=100 * (base_acc - acc),
                )
            )
    return pd.DataFrame(rows)


def measured_reach_px(table: pd.DataFrame, level: float = 0.9) -> int:
    """The largest ``d`` up to which accuracy stays at least ``level`` at every distance
    (``d_min - 1`` when it is below at the first)."""
    t = table.sort_values("distance_px")
    below = t[t.accuracy < level]
    if below.empty:
        return int(t.distance_px.max())
    return int(below.distance_px.iloc[0]) - 1


def probe_markdown(result: ProbeSectionResult) -> tuple[str, str]:
    """(explanation, tables) for report.md."""
    from ..probe.evaluate import distance_bins
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
        f"(SepConv 7x7) sees d <= {15 + task.square // 2} px only (dashed line). Accuracy on the fixed test "
        f"split ({int(result.eval_table.groupby('model').n.sum().iloc[0])} images); ERFs over "
        f"{PROBE_ERF_IMAGES} probe test images at {task.size} px; truncation per relative size with probe "
        f"labels (top-1 = probe accuracy). Predicted reach: the largest d the truncated kernel can "
        f"still carry to the readout (kept taps x stride 4 + the 5x5 depthwise conv + the stem + half the "
        f"square; 1D H_b kernels: not predicted); measured reach: the largest d up to which accuracy stays "
        f">= 90 % at every distance. Far bin: {lo}-{hi} px."
    )
    table = (
        "Test accuracy (%) per distance bin:\n\n"
        + _md(acc.reset_index())
        + "\n\nTruncation (stage 0) with probe labels: accuracy (%) over all distances and in the far bin, "
        "and the drop in points from the untruncated model:\n\n" + _md(drops)
    )
    return how, table


def _md(df: pd.DataFrame) -> str:
    from .markdown import markdown_table

    return markdown_table(df)
