"""Heatmaps of effective receptive fields, one per model side by side (the paper's Fig. 5).

Scaling (``scale``):
- ``"replknet"`` (default, as RepLKNet's and the paper's figures): ``log10(x + 1)``
  divided by each map's maximum, so every map spans [0, 1] on one shared colour bar;
- ``"log"``: each map divided by its maximum on a shared logarithmic colour scale from
  ``floor`` to 1 (decades of decay stay visible where ``log10(x + 1)`` is nearly linear,
  i.e. for small raw values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..erf.metrics import replknet_scale  # noqa: E402
from .labels import weights_tag  # noqa: E402

__all__ = ["plot_erf", "erf_panel_title"]

SCALES = ("replknet", "log")


def erf_panel_title(result) -> str:
    """``model`` and a short weights tag of an :class:`~hpx_analysis.erf.ErfResult` (from its
    settings; the full description is in its record)."""
    settings = getattr(result, "settings", {}) or {}
    model = settings.get("model", "model")
    weights = settings.get("weights")
    if not weights:
        return str(model)
    return f"{model}\n{weights_tag(weights)}"


def _panels(results) -> list[tuple[str, np.ndarray]]:
    if isinstance(results, Mapping):
        return [(str(title), np.asarray(m, dtype=np.float64)) for title, m in results.items()]
    return [(erf_panel_title(r), np.asarray(r.matrix, dtype=np.float64)) for r in results]


def plot_erf(
    results: Sequence | Mapping[str, np.ndarray],
    axes: Sequence | None = None,
    *,
    scale: str = "replknet",
    floor: float = 1e-4,
    cmap: str = "RdYlGn",
) -> Figure:
    """Draw one heatmap per ERF into ``axes`` (created side by side when None).

    ``results``: :class:`~hpx_analysis.erf.ErfResult` objects (titled with the model and
    weights in their settings) or a mapping ``title -> raw matrix``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    panels = _panels(results)
    if not panels:
        raise ValueError("nothing to plot: no ERF results given")
    if axes is None:
        fig, axes = plt.subplots(
            1, len(panels), figsize=(4.2 * len(panels) + 0.8, 4.4), squeeze=False, constrained_layout=True
        )
        axes = list(axes[0])
    else:
        axes = list(np.ravel(axes))
        if len(axes) < len(panels):
            raise ValueError(f"{len(panels)} ERFs need {len(panels)} axes, got {len(axes)}")
        fig = axes[0].figure
    if scale == "replknet":
        norm, label = Normalize(0.0, 1.0), "log10(x + 1), normalized"
    else:
        norm, label = LogNorm(floor, 1.0), "x / max (log scale)"
    image = None
    for ax, (title, matrix) in zip(axes, panels):
        if scale == "replknet":
            shown = replknet_scale(matrix)
        else:
            top = matrix.max()
            shown = np.clip(matrix / top if top > 0 else matrix, floor, 1.0)
        image = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[: len(panels)], shrink=0.85, label=label)
    return fig
