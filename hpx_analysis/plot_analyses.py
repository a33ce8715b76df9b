"""Figures for the kernel, coverage and truncation analyses (Figs. 4, 6, 7).

Each function draws into the given axes (or a new figure) and returns the figure; the
numbers come from :mod:`.kernels`, :mod:`.coverage` and :mod:`.truncation`.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .kernels import ORIENTATION_2D, ORIENTATION_WRAPPED, KernelResult
from .truncation import BASELINE_STAGE

__all__ = ["plot_kernels", "plot_coverage", "plot_truncation"]

METRIC_LABELS = {"top1": "top-1 accuracy (%)", "top5": "top-5 accuracy (%)",
                 "agreement": "top-1 agreement with untruncated (%)", "kl": "mean KL(untruncated || truncated)"}


def plot_kernels(result: KernelResult, axes: Sequence | np.ndarray | None = None,
                 picked: bool = True, weights: str | None = None):
    """One panel per stage: the normalized mean kernel (top row) and, with ``picked``,
    the picked channel (bottom row). ``axes``: as many axes as panels (any shape);
    ``weights`` (e.g. ``LoadedModel.weights``) goes into the title."""
    n = len(result.stages)
    rows = 2 if picked else 1
    if axes is None:
        fig, axes = plt.subplots(rows, n, figsize=(3.1 * n, 3.2 * rows + 0.6), squeeze=False)
    axes = np.asarray(axes, dtype=object).reshape(-1)
    if len(axes) < rows * n:
        raise ValueError(f"plot_kernels needs {rows * n} axes, got {len(axes)}")
    axes = axes[: rows * n].reshape(rows, n)
    fig = axes[0, 0].figure
    im = None
    for j, sk in enumerate(result.stages):
        maps = [("mean over channels", sk.mean)]
        if picked:
            how = "top energy" if sk.channel_auto else "picked"
            maps.append((f"channel {sk.channel} ({how})", sk.picked))
        for i, (title, arr) in enumerate(maps):
            ax = axes[i, j]
            im = ax.imshow(arr, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_title(f"stage {sk.stage + 1}, block {sk.block}\n{title}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if sk.kernel_ndim == 2:
                ax.plot([arr.shape[1] // 2], [arr.shape[0] // 2], "k+", ms=6)
            else:
                ax.plot([sk.at[1]], [sk.at[0]], "k*", ms=7)
                ax.set_xlabel(f"{sk.feature_size[0]}x{sk.feature_size[1]} map, output at {sk.at}", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=list(axes.reshape(-1)), shrink=0.6, label="normalized weight")
    nd = {sk.kernel_ndim for sk in result.stages}
    note = ORIENTATION_2D if nd == {2} else ORIENTATION_WRAPPED if nd == {1} else f"{ORIENTATION_2D}; {ORIENTATION_WRAPPED}"
    label = f"{result.model} [{weights}]" if weights else result.model
    fig.suptitle(f"{label}: normalized kernels per stage\n{note}", fontsize=9)
    return fig


def _with_weights(df: pd.DataFrame, model: str) -> str:
    """``model [weights]`` when the table records the weights (the commands' tables do)."""
    if "weights" not in df.columns:
        return model
    return f"{model} [{df.loc[df['model'] == model, 'weights'].iloc[0]}]"


def plot_coverage(df: pd.DataFrame, ax=None):
    """Coverage against block depth (1-based), one line per model (labelled with its
    weights when ``df`` has a ``weights`` column); the stage boundaries (dashed) are those of
    the deepest model."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    fig = ax.figure
    for model, g in df.groupby("model", sort=False):
        g = g.sort_values("depth")
        ax.plot(g["depth"] + 1, g["coverage"], marker="o", ms=3, label=_with_weights(df, model))
    if len(df):
        # stage boundaries of the deepest model (models of different depths cannot share them)
        deepest = df.groupby("model", sort=False)["depth"].max().idxmax()
        g = df[df["model"] == deepest]
        starts = g.groupby("stage")["depth"].min().sort_index()
        for s, d in starts.items():
            if d > 0:
                ax.axvline(d + 0.5, color="grey", ls="--", lw=0.8)
            ax.text(d + 1, 0.98, f"S{s + 1}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("block depth")
    ax.set_ylabel("relative feature-map coverage")
    ax.legend(fontsize=8)
    return fig


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
    for model, gm in d.groupby("model", sort=False):
        prefix = f"{_with_weights(d, model)} " if d["model"].nunique() > 1 else ""
        base = gm[gm["stage"] == BASELINE_STAGE]["value"]
        if len(base):
            ax.axhline(float(base.iloc[0]), color="k", ls=":", lw=1, label=f"{prefix}untruncated")
        for s, g in gm[gm["stage"] != BASELINE_STAGE].groupby("stage"):
            g = g.sort_values("rel_size")
            ax.plot(g["rel_size"], g["value"], marker="o", ms=3, label=f"{prefix}S{int(s) + 1}")
    models = d["model"].unique()
    suffix = f" ({_with_weights(d, models[0])})" if len(models) == 1 else ""
    ax.set_xlabel("relative filter size" + suffix)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize=8)
    return fig
