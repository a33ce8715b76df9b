"""Accuracy or agreement against relative kernel size per stage (the paper's Fig. 7)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..truncation import BASELINE_STAGE
from .labels import with_weights

__all__ = ["plot_truncation", "METRIC_LABELS"]

METRIC_LABELS = {
    "top1": "top-1 accuracy (%)",
    "top5": "top-5 accuracy (%)",
    "agreement": "top-1 agreement with untruncated (%)",
    "kl": "mean KL(untruncated || truncated)",
}


def plot_truncation(df: pd.DataFrame, ax=None, metric: str | None = None):
    """Metric against relative filter size, one curve per stage, the untruncated value
    as a horizontal reference. ``metric`` defaults to top-1 when present, else agreement.
    The legend names the model and its weights (``weights`` column) when there are several
    models; with one, the x label does."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    fig = ax.figure
    if metric is None:
        metric = "top1" if (df["metric"] == "top1").any() else "agreement"
    d = df[df["metric"] == metric]
    several = d["model"].nunique() > 1
    for model, gm in d.groupby("model", sort=False):
        prefix = f"{with_weights(d, model)} " if several else ""
        base = gm[gm["stage"] == BASELINE_STAGE]["value"]
        if len(base):
            ax.axhline(float(base.iloc[0]), color="k", ls=":", lw=1, label=f"{prefix}untruncated")
    swept = d[d["stage"] != BASELINE_STAGE]
    if len(swept):
        swept = swept.assign(
            stage_label=[f"S{int(s) + 1}" for s in swept["stage"]],
            model_label=[with_weights(d, m) for m in swept["model"]],
        )
        swept = swept.sort_values(["stage", "rel_size"])
        marks = dict(style="model_label", markers=True, dashes=False) if several else dict(marker="o")
        sns.lineplot(
            data=swept, x="rel_size", y="value", hue="stage_label", markersize=5, estimator=None, ax=ax, **marks
        )
    models = d["model"].unique()
    suffix = f" ({with_weights(d, models[0])})" if len(models) == 1 else ""
    ax.set_xlabel("relative filter size" + suffix)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize=8, title=None)
    return fig
