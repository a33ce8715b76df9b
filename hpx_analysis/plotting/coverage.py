"""Relative feature-map coverage against block depth (the paper's Fig. 6)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .labels import stage_label, with_weights

__all__ = ["plot_coverage"]


def plot_coverage(df: pd.DataFrame, ax=None):
    """Coverage against block depth (1-based), one line per model with its own marker and
    dash (labelled with a short weights tag when ``df`` has a ``weights`` column; the legend
    sits right of the axes); the stage boundaries (dashed, labelled ``s0``, ``s1``, ... as
    ``--stage`` counts) are those of the deepest model; the x axis spans the blocks with half
    a block of margin."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    fig = ax.figure
    if len(df):
        labels = {m: with_weights(df, m) for m in df["model"].unique()}
        data = df.assign(block_depth=df["depth"] + 1, line=df["model"].map(labels)).sort_values(["line", "depth"])
        sns.lineplot(
            data=data,
            x="block_depth",
            y="coverage",
            hue="line",
            hue_order=list(labels.values()),
            style="line",  # overlapping lines stay apart by marker and dash
            style_order=list(labels.values()),
            markers=True,
            markersize=5,
            estimator=None,
            sort=True,
            ax=ax,
        )
    if len(df):
        # stage boundaries of the deepest model (models of different depths cannot share them)
        deepest = df.groupby("model", sort=False)["depth"].max().idxmax()
        g = df[df["model"] == deepest]
        starts = g.groupby("stage")["depth"].min().sort_index()
        for s, d in starts.items():
            if d > 0:
                ax.axvline(d + 0.5, color="grey", ls="--", lw=0.8)
            top = ax.get_xaxis_transform()
            ax.text(d + 0.55, 0.98, stage_label(s, short=True), transform=top, va="top", fontsize=8)
        _block_axis(ax, int(df["depth"].max()) + 1)
    ax.set_xlabel("block depth")
    ax.set_ylabel("relative feature-map coverage")
    if len(df):  # beside the axes, where it covers neither lines nor axis labels
        ax.legend(fontsize=8, title=None, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def _block_axis(ax, blocks: int) -> None:
    """Block depths 1..``blocks`` with half a block of margin; every depth ticked when few."""
    ax.set_xlim(0.5, blocks + 0.5)
    if blocks <= 20:
        ax.set_xticks(range(1, blocks + 1))
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)
