"""Probe accuracy against the distance of the coloured square from the readout centre."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .labels import weights_tag

__all__ = ["plot_probe_accuracy"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")


def plot_probe_accuracy(table: pd.DataFrame, ax=None, chance: float | None = 0.25, rf_px: dict | None = None):
    """One line per model and weights of ``accuracy`` against ``distance_px``.

    Each line is labelled ``model [weights tag]`` (``bundled``, ``random init (seed 0)``, a
    checkpoint's file name) and has its own colour, open marker and dash; the markers shrink
    from line to line, so lines that coincide (e.g. several at 100 %) stay visible one inside
    the other. A dotted line marks chance and, per model in ``rf_px``, a dashed vertical line
    in its colour its theoretical receptive-field reach. The legend sits right of the axes.

    Args:
        table: rows of ``probe_eval.csv`` (``model``, ``distance_px``, ``accuracy`` and,
            when present, ``weights``).
        ax: the axes to draw into (None: a new figure).
        chance: the chance accuracy (None: no line).
        rf_px: model -> receptive-field reach in pixels.

    Returns:
        Figure: the figure of ``ax``.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
    else:
        fig = ax.figure
    keys = ["model", "weights"] if "weights" in table.columns else ["model"]
    for i, (key, sub) in enumerate(table.groupby(keys, sort=False, dropna=False)):
        key = key if isinstance(key, tuple) else (key,)
        model, tag = key[0], weights_tag(key[1]) if len(key) > 1 and isinstance(key[1], str) else ""
        sub = sub.sort_values("distance_px")
        (line,) = ax.plot(
            sub.distance_px,
            100 * sub.accuracy,
            marker=_MARKERS[i % len(_MARKERS)],
            ls=_LINESTYLES[i % len(_LINESTYLES)],
            ms=max(3.0, 8.0 - 1.5 * i),
            mfc="none",
            lw=1.2,
            label=f"{model} [{tag}]" if tag else str(model),
        )
        if rf_px and model in rf_px:
            ax.axvline(rf_px[model], color=line.get_color(), ls="--", lw=0.8)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel("distance d of the square from the readout centre (px, Chebyshev)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 104)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    return fig
