"""Accuracy or agreement against relative kernel size per stage (the paper's Fig. 7)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..truncation import BASELINE_STAGE
from .labels import stage_label, with_weights

__all__ = ["plot_truncation", "METRIC_LABELS"]

METRIC_LABELS = {
    "top1": "top-1 accuracy (%)",
    "top5": "top-5 accuracy (%)",
    "agreement": "top-1 agreement with untruncated (%)",
    "kl": "mean KL(untruncated || truncated)",
}
_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINESTYLES = ("-", "--", "-.", ":")


def plot_truncation(df: pd.DataFrame, ax=None, metric: str | None = None):
    """Metric against relative filter size, one curve per stage (labelled ``stage 0``, ...
    as ``--stages`` counts), the untruncated value as a horizontal reference.

    With one model each stage has its own colour and the x label names the model and its
    weights tag; with several, each model has its own colour (its untruncated line too) and
    each stage its own marker and dash, and the legend names model, weights tag and stage.

    Args:
        df: rows of ``truncation.csv`` (``model``, ``stage``, ``rel_size``, ``metric``,
            ``value`` and, when present, ``weights``).
        ax: the axes to draw into (None: a new figure).
        metric: the metric to draw (default top-1 when present, else agreement).

    Returns:
        Figure: the figure of ``ax``.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    fig = ax.figure
    if metric is None:
        metric = "top1" if (df["metric"] == "top1").any() else "agreement"
    d = df[df["metric"] == metric]
    models = list(d["model"].unique())
    several = len(models) > 1
    stages = sorted(int(s) for s in d["stage"].unique() if s != BASELINE_STAGE)
    for i, model in enumerate(models):
        gm = d[d["model"] == model]
        name = with_weights(d, model)
        colour = f"C{i}" if several else "k"
        base = gm[gm["stage"] == BASELINE_STAGE]["value"]
        if len(base):
            label = f"{name} untruncated" if several else "untruncated"
            ax.axhline(float(base.iloc[0]), color=colour, ls=":", lw=1, label=label)
        for j, stage in enumerate(stages):
            line = gm[gm["stage"] == stage].sort_values("rel_size")
            if not len(line):
                continue
            style = dict(color=f"C{i}", marker=_MARKERS[j % len(_MARKERS)], ls=_LINESTYLES[j % len(_LINESTYLES)])
            label = f"{name}, {stage_label(stage)}"
            if not several:
                style, label = dict(color=f"C{j}", marker="o", ls="-"), stage_label(stage)
            ax.plot(line["rel_size"], line["value"], ms=5, lw=1.5, label=label, **style)
    suffix = f" ({with_weights(d, models[0])})" if len(models) == 1 else ""
    ax.set_xlabel("relative filter size" + suffix)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    if len(d):
        ax.legend(fontsize=8, title=None)
    return fig
