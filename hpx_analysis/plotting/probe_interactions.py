"""Probe models' interactions: mean interaction distance over training, and the trained
readout unit's mass share on the square against chance per distance bin."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["plot_probe_interactions"]


def plot_probe_interactions(distances: pd.DataFrame, shares: pd.DataFrame, axes=None):
    """Left: each probe's mean interaction distance against the training step (step 0: a
    seeded random init). Right: the trained readout unit's share of mass on the square per
    distance bin (%), the chance share dotted.

    Args:
        distances: model, step, mean_distance_px (last block per model and step).
        shares: model, bin, share, chance.
        axes: two axes, or None for a new figure.

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    left, right = axes
    last = distances.groupby(["model", "step"], sort=False).tail(1)
    for model, sub in last.groupby("model", sort=False):
        left.plot(sub.step, sub.mean_distance_px, marker="o", ms=3, label=model)
    left.set_xscale("symlog", linthresh=25)
    left.set_xlabel("training step (0: random init, seeded)")
    left.set_ylabel("mean interaction distance (px)")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    bins = list(dict.fromkeys(shares.bin))
    x = np.arange(len(bins))
    models = list(dict.fromkeys(shares.model))
    width = 0.8 / max(1, len(models))
    for k, model in enumerate(models):
        sub = shares[shares.model == model].set_index("bin").loc[bins]
        right.bar(x + (k - (len(models) - 1) / 2) * width, 100 * sub.share, width, label=f"{model} [bundled]")
    chance = shares.groupby("bin", sort=False).chance.mean().loc[bins]
    right.plot(x, 100 * chance, color="k", ls=":", marker="_", ms=14, label="chance")
    right.set_xticks(x, [f"{b} px" for b in bins])
    right.set_xlabel("distance d of the square (bin)")
    right.set_ylabel("readout map's mass on the square (%)")
    right.legend(fontsize=7)
    left.figure.tight_layout()
    return left.figure
