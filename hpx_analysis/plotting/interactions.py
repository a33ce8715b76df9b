"""Figures of the interaction analysis: mean distance per block, and the query maps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["plot_interaction_distance", "plot_interaction_maps", "plot_interactions"]


def plot_interaction_distance(results, ax=None):
    """Mean interaction distance against block index, one line per model (the spread over
    images as a band), stage boundaries as dotted lines.

    Args:
        results: :class:`~hpx_analysis.interactions.InteractionResult` objects.
        ax: matplotlib axes to draw into (default: a new figure).

    Returns:
        matplotlib.figure.Figure: the figure of ``ax``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    boundaries: set[float] = set()
    for res in results:
        frame = res.to_frame()
        x = np.arange(len(frame))
        mean, std = frame.mean_distance_px.to_numpy(), frame.std_distance_px.to_numpy()
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=res.label)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
        stages = frame.stage.to_numpy()
        boundaries.update(float(k) - 0.5 for k in range(1, len(stages)) if stages[k] != stages[k - 1])
    for b in sorted(boundaries):
        ax.axvline(b, color="0.6", ls=":", lw=1)
    ax.set_xlabel("block (in forward order; dotted: stage boundaries)")
    ax.set_ylabel("mean interaction distance (px)")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    return ax.figure


def _panels(results, first: bool) -> list[tuple[str, list[tuple[str, np.ndarray, tuple]]]]:
    rows = []
    for res in results:
        for b in res.blocks:
            maps = b.first_maps if first and b.first_maps else b.maps
            rows.append((f"{res.label}\n{b.name} {b.mixer}", [(q, maps[q], b.query_tokens[q]) for q in maps]))
    return rows


def plot_interaction_maps(results, axes=None, first: bool = True):
    """The query maps: a row per block (of every result), a column per query point; each
    map ``r(i, .)`` on the block's token grid, scaled to its own maximum, the query marked.

    Args:
        results: :class:`~hpx_analysis.interactions.InteractionResult` objects.
        axes: a 2D array of axes (rows x queries), or None for a new figure.
        first: the first image's maps (True) or the mean over images.

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    rows = _panels(results, first)
    ncols = max((len(r[1]) for r in rows), default=1)
    if axes is None:
        _, axes = plt.subplots(len(rows), ncols, figsize=(2.2 * ncols, 2.0 * len(rows)), squeeze=False)
    axes = np.atleast_2d(axes)
    for ax_row, (title, panels) in zip(axes, rows):
        for ax in ax_row:
            ax.set_axis_off()
        for col, (query, array, token) in enumerate(panels):
            ax = ax_row[col]
            ax.imshow(array / max(float(np.max(array)), 1e-30), cmap="magma", vmin=0, vmax=1)
            ax.plot(token[1], token[0], marker="+", color="cyan", ms=8, mew=1.5)
            ax.set_title(query, fontsize=8)
        ax_row[0].text(-0.1, 0.5, title, transform=ax_row[0].transAxes, ha="right", va="center", fontsize=7)
    return axes[0, 0].figure


def plot_interactions(results, axes=None):
    """Distance per block (left) and the rollout maps of the first result (right) when it
    has any, otherwise the distance alone.

    Args:
        results: :class:`~hpx_analysis.interactions.InteractionResult` objects.
        axes: a sequence of axes: one for the distance, then one per rollout map.

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    rollout = results[0].rollout or {} if results else {}
    if axes is None:
        _, axes = plt.subplots(1, 1 + len(rollout), figsize=(7 + 2.5 * len(rollout), 3.5), squeeze=False)
        axes = axes[0]
    plot_interaction_distance(results, axes[0])
    for ax, (query, array) in zip(axes[1:], rollout.items()):
        ax.imshow(array, cmap="magma")
        ax.set_title(f"rollout (heuristic): {query}", fontsize=8)
        ax.set_axis_off()
    return axes[0].figure
