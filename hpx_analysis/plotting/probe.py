"""Probe accuracy against the distance of the coloured square from the readout centre."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["plot_probe_accuracy"]


def plot_probe_accuracy(table: pd.DataFrame, ax=None, chance: float | None = 0.25, rf_px: dict | None = None):
    """One line per model (and weights) of ``accuracy`` against ``distance_px``; a dotted line
    at chance and, per model in ``rf_px``, a vertical mark at its theoretical receptive-field
    reach. Returns the figure."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.6))
    else:
        fig = ax.figure
    keys = ["model", "weights"] if table.groupby("model").weights.nunique().max() > 1 else ["model"]
    for key, sub in table.groupby(keys, sort=False):
        label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        sub = sub.sort_values("distance_px")
        (line,) = ax.plot(sub.distance_px, 100 * sub.accuracy, marker="o", ms=3, label=label)
        model = key[0] if isinstance(key, tuple) else key
        if rf_px and model in rf_px:
            ax.axvline(rf_px[model], color=line.get_color(), ls="--", lw=0.8)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel("distance d of the square from the readout centre (px, Chebyshev)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 102)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
