"""Heatmaps of effective receptive fields, one per model side by side (the paper's Fig. 5).

Scaling (``scale``):
- ``"replknet"`` (default, as RepLKNet's and the paper's figures): ``log10(x + 1)``
  divided by each map's maximum, so every map spans [0, 1] on one shared colour bar;
- ``"log"``: each map divided by its maximum on a shared logarithmic colour scale from
  ``floor`` to 1 (decades of decay stay visible where ``log10(x + 1)`` is nearly linear,
  i.e. for small raw values);
- ``"linear"`` (SLaK's figures): each map divided by its maximum;
- ``"power:G"`` (VMamba's figures, G = 0.2-0.25): ``(x / max) ** G``.

The command line's ``--scale log`` is ``"replknet"`` here. ``overlay``: an RGB image
(H x W x 3, values in [0, 1]) drawn under semi-transparent heatmaps.

:func:`plot_erf_grid` draws a row per model and a column per stage, layer or input size;
:func:`plot_erf_series` draws metrics against a stage, size or checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..erf.metrics import DEAD_FRACTION, R50_PX, R90_PX, SQUARE_SIDE_T02, replknet_scale  # noqa: E402
from .labels import result_weights_tag, weights_tag  # noqa: E402

__all__ = ["plot_erf", "check_cmap", "erf_panel_title", "plot_erf_grid", "plot_erf_series", "scaled_map", "parse_scale"]

SCALES = ("replknet", "log", "linear", "power:G")


def parse_scale(scale: str) -> tuple[str, float | None]:
    """``"power:0.25"`` -> ``("power", 0.25)``; the other scales -> ``(name, None)``."""
    if isinstance(scale, str) and scale.startswith("power:"):
        try:
            gamma = float(scale.split(":", 1)[1])
        except ValueError:
            gamma = -1.0
        if not gamma > 0:
            raise ValueError(f"power scale needs a positive exponent (power:0.25), got {scale!r}")
        return "power", gamma
    if scale not in ("replknet", "log", "linear"):
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale, None


def scaled_map(matrix, scale: str = "replknet", floor: float = 1e-4) -> np.ndarray:
    """The map as a figure shows it under ``scale`` (values in [0, 1])."""
    name, gamma = parse_scale(scale)
    matrix = np.asarray(matrix, dtype=np.float64)
    if name == "replknet":
        return replknet_scale(matrix)
    top = matrix.max()
    rel = matrix / top if top > 0 else matrix
    if name == "log":
        return np.clip(rel, floor, 1.0)
    return rel if name == "linear" else rel**gamma


def erf_panel_title(result) -> str:
    """``model`` and a short weights tag of an :class:`~hpx_analysis.erf.ErfResult` (from its
    settings; the full description is in its record)."""
    settings = getattr(result, "settings", {}) or {}
    model = settings.get("model", "model")
    weights = settings.get("weights")
    if not weights:
        return str(model)
    return f"{model}\n{weights_tag(weights)}"


_RESULTS_KINDS = "a sequence of ErfResult objects (or anything with a .matrix) or a mapping title -> 2D array"


def check_cmap(cmap: str) -> str:
    """``cmap`` if matplotlib knows the colour map; a ValueError naming close ones otherwise.

    Args:
        cmap: the colour map's name.

    Returns:
        str: ``cmap``.
    """
    import difflib

    if isinstance(cmap, str) and cmap in matplotlib.colormaps:
        return cmap
    close = difflib.get_close_matches(str(cmap), list(matplotlib.colormaps), n=4)
    hint = f" (close: {', '.join(close)})" if close else " (e.g. RdYlGn, viridis, magma)"
    raise ValueError(f"unknown matplotlib colour map {cmap!r}{hint}")


def _as_map(title: str, matrix) -> tuple[str, np.ndarray]:
    try:
        arr = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"the ERF {title!r} is not a numeric array ({type(matrix).__name__})") from None
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"the ERF {title!r} must be a non-empty 2D array, got shape {arr.shape}")
    return title, arr


def _panels(results) -> list[tuple[str, np.ndarray]]:
    """``(title, matrix)`` per map; a TypeError or ValueError saying what is expected otherwise."""
    if isinstance(results, Mapping):
        return [_as_map(str(title), m) for title, m in results.items()]
    if hasattr(results, "matrix"):  # one result
        results = [results]
    if isinstance(results, (str, bytes, np.ndarray)) or not isinstance(results, Iterable):
        raise TypeError(f"plot_erf takes {_RESULTS_KINDS}; got {type(results).__name__}")
    panels = []
    for i, r in enumerate(results):
        if not hasattr(r, "matrix"):
            raise TypeError(
                f"plot_erf takes {_RESULTS_KINDS}; item {i} is a {type(r).__name__} "
                "(pass raw arrays as a mapping, e.g. {'model': matrix})"
            )
        panels.append(_as_map(erf_panel_title(r) + _map_note(r), r.matrix))
    return panels


def _map_note(result) -> str:
    """`` (stage k)``, `` (layer NAME)``, ``, protocol`` for a result of a non-default unit; empty otherwise."""
    unit = getattr(result, "unit", None) or {}
    parts = [f"{key} {unit[key]}" for key in ("stage", "layer", "protocol") if key in unit]
    return f"\n{', '.join(parts)}" if parts else ""


def plot_erf(
    results: Sequence | Mapping[str, np.ndarray],
    axes: Sequence | None = None,
    *,
    scale: str = "replknet",
    floor: float = 1e-4,
    cmap: str = "RdYlGn",
    overlay: np.ndarray | None = None,
    alpha: float = 0.6,
) -> Figure:
    """Draw one heatmap per ERF into ``axes`` (created side by side when None).

    ``results``: :class:`~hpx_analysis.erf.ErfResult` objects (titled with the model and
    weights in their settings) or a mapping ``title -> raw matrix``. ``overlay``: an RGB
    image shown under every heatmap (resized to the map), the heatmap at ``alpha``.
    """
    name, _ = parse_scale(scale)
    check_cmap(cmap)
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
    norm, label = _norm(scale, floor)
    image = None
    for ax, (title, matrix) in zip(axes, panels):
        shown = scaled_map(matrix, scale, floor)
        if overlay is not None:
            ax.imshow(_fit_image(overlay, shown.shape), interpolation="bilinear")
        image = ax.imshow(
            shown, cmap=cmap, norm=norm, interpolation="nearest", alpha=alpha if overlay is not None else None
        )
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[: len(panels)], shrink=0.85, label=label)
    return fig


def _norm(scale: str, floor: float):
    name, gamma = parse_scale(scale)
    if name == "log":
        return LogNorm(floor, 1.0), "x / max (log scale)"
    labels = {"replknet": "log10(x + 1), normalized", "linear": "x / max", "power": f"(x / max)^{gamma or 1:g}"}
    return Normalize(0.0, 1.0), labels[name]


def _fit_image(image, shape) -> np.ndarray:
    """An RGB image (H x W x 3, [0, 1] or uint8) resized to ``shape`` (bilinear)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8)
    pil = Image.fromarray(arr).convert("RGB").resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(pil) / 255.0


def plot_erf_grid(
    results: Sequence,
    *,
    column: str = "stage",
    scale: str = "replknet",
    floor: float = 1e-4,
    cmap: str = "RdYlGn",
) -> Figure:
    """A row per model (run label without the map's suffix, and its short weights tag) and a
    column per value of ``column`` (``"stage"``, ``"layer"`` or ``"size"``) of
    :class:`~hpx_analysis.erf.ErfResult` objects; every map scaled on its own."""
    rows: dict[str, dict] = {}
    columns: list = []
    several_sizes = column != "size" and len({_column_value(r, "size") for r in results}) > 1
    for r in results:
        key = _column_value(r, column)
        if key not in columns:
            columns.append(key)
        tag = result_weights_tag(r)  # e.g. "random init (seed 0)": an untrained model says so
        name = _row_name(r) + (f"\n[{tag}]" if tag else "")
        name += f"\n{_column_value(r, 'size')} px" if several_sizes else ""
        rows.setdefault(name, {})[key] = r
    if not rows:
        raise ValueError("nothing to plot: no ERF results given")
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(2.6 * len(columns) + 1.0, 2.7 * len(rows)),
        squeeze=False,
        constrained_layout=True,
    )
    norm, label = _norm(scale, floor)
    image = None
    for i, (name, cells) in enumerate(rows.items()):
        for j, key in enumerate(columns):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{column} {key}", fontsize=10)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
            if key not in cells:
                ax.set_frame_on(False)
                continue
            image = ax.imshow(
                scaled_map(cells[key].matrix, scale, floor), cmap=cmap, norm=norm, interpolation="nearest"
            )
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.85, label=label)
    return fig


def _column_value(result, column: str):
    if column == "size":
        return int(result.settings.get("size") or result.input_size[0])
    return result.unit.get(column, "last")


def _row_name(result) -> str:
    """The run label without the map's suffix (and the size's)."""
    return str(result.run.get("run_label") or result.model_name)


def plot_erf_series(
    frame,
    x: str,
    metrics: Sequence[str] = (R50_PX, R90_PX, SQUARE_SIDE_T02, DEAD_FRACTION),
    hue: str = "model",
    ax=None,
) -> Figure:
    """Metrics of ``erf_metrics.csv`` rows (a DataFrame) against column ``x`` (a stage, the
    size, a checkpoint), one line per ``hue`` value, one panel per metric."""
    metrics = [m for m in metrics if m in frame.columns]
    if not metrics or x not in frame.columns:
        raise ValueError(f"nothing to plot: need column {x!r} and one of the metrics")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False, constrained_layout=True)
    for ax, metric in zip(axes[0], metrics):
        for name, part in frame.groupby(hue, sort=False) if hue in frame.columns else [("", frame)]:
            ax.plot(part[x].astype(str), part[metric].astype(float), marker="o", label=str(name))
        ax.set_xlabel(x)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0][0].legend(fontsize=8)
    return fig
