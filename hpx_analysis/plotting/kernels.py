"""Learned long-convolution kernels per stage (the paper's Fig. 4)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..kernels import ORIENTATION_2D, ORIENTATION_WRAPPED, KernelResult
from .labels import stage_label, weights_tag

__all__ = ["plot_kernels"]


def plot_kernels(
    result: KernelResult, axes: Sequence | np.ndarray | None = None, picked: bool = True, weights: str | None = None
):
    """One panel per stage: the normalized mean kernel (top row) and, with ``picked``,
    the picked channel (bottom row). ``axes``: as many axes as panels (any shape);
    ``weights`` (e.g. ``LoadedModel.weights``) goes into the title as a short tag."""
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
            ax.set_title(f"{stage_label(sk.stage)}, block {sk.block}\n{title}", fontsize=8)
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
    note = (
        ORIENTATION_2D
        if nd == {2}
        else ORIENTATION_WRAPPED
        if nd == {1}
        else f"{ORIENTATION_2D}; {ORIENTATION_WRAPPED}"
    )
    label = f"{result.model} [{weights_tag(weights)}]" if weights else result.model
    fig.suptitle(f"{label}: normalized kernels per stage\n{note}", fontsize=9)
    return fig
