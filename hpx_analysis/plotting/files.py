"""The figure files of each analysis: which plot, which file names, resolution and title.
Each ``save_*_figure`` draws a result into a new figure, writes it into ``out_dir`` and
closes it; returns the paths written."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

__all__ = [
    "save_erf_figure",
    "save_erf_figures",
    "save_kernel_figure",
    "save_coverage_figure",
    "save_truncation_figure",
    "save_runtime_figure",
    "save_probe_figure",
]


def _write(fig, out_dir: str | Path, names: list[str], dpi: int) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in names]
    try:
        for path in paths:
            fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)  # titles, legends: never clipped
    finally:
        plt.close(fig)
    return paths


def save_erf_figure(comparison, out_dir: str | Path) -> list[Path]:
    """``erf.png`` and ``erf.pdf`` of an :class:`~hpx_analysis.erf.ErfComparison`: the maps
    side by side in RepLKNet's scale.

    Args:
        comparison: the results.
        out_dir: the output folder.

    Returns:
        list[Path]: the files written.
    """
    from .erf import plot_erf

    return _write(plot_erf(comparison.results), out_dir, ["erf.png", "erf.pdf"], dpi=150)


def save_kernel_figure(result, out_dir: str | Path) -> list[Path]:
    """``kernels_<model>.png`` of a :class:`~hpx_analysis.kernels.KernelResult`."""
    from .kernels import plot_kernels

    return _write(plot_kernels(result, weights=result.weights), out_dir, [f"kernels_{result.model}.png"], dpi=130)


def save_coverage_figure(result, out_dir: str | Path) -> list[Path]:
    """``coverage.png`` of a :class:`~hpx_analysis.coverage.CoverageResult`."""
    from .coverage import plot_coverage

    fig = plot_coverage(result.to_frame())
    if result.threshold is not None:
        fig.axes[0].set_title(f"window >= {result.threshold}, diameter: {result.reading}", fontsize=9)
    return _write(fig, out_dir, ["coverage.png"], dpi=150)


def save_truncation_figure(comparison, out_dir: str | Path) -> list[Path]:
    """``truncation.png`` of a :class:`~hpx_analysis.truncation.TruncationComparison`: top-1
    accuracy (or agreement) beside the KL divergence from the untruncated model."""
    from .truncation import plot_truncation

    frame = comparison.to_frame()
    has_kl = bool((frame["metric"] == "kl").any()) if len(frame) else False
    fig, axes = plt.subplots(1, 2 if has_kl else 1, figsize=(12 if has_kl else 6, 4), squeeze=False)
    plot_truncation(frame, ax=axes[0, 0])  # accuracy, or agreement without labels
    if has_kl:
        plot_truncation(frame, ax=axes[0, 1], metric="kl")
    s = comparison.settings
    if s:
        fig.suptitle(f"{s.get('shape')} truncation, {s.get('num_images')} images", fontsize=9)
    fig.tight_layout()
    return _write(fig, out_dir, ["truncation.png"], dpi=150)


def save_runtime_figure(result, out_dir: str | Path) -> list[Path]:
    """``runtime.png`` of a :class:`~hpx_analysis.runtime.RuntimeResult`."""
    from .runtime import plot_runtime

    s = result.settings
    title = (
        f"Token mixer runtime, batch {s['batch']}, {s['dim']} ch\n{s['device_description']}"
        if {"batch", "dim", "device_description"} <= set(s)
        else None
    )
    return _write(plot_runtime(result.to_frame(), title=title), out_dir, ["runtime.png"], dpi=150)


def save_probe_figure(table, out_dir: str | Path, rf_px: dict | None = None) -> list[Path]:
    """``probe_eval.png``: accuracy against distance for every model in ``table``."""
    from .probe import plot_probe_accuracy

    return _write(plot_probe_accuracy(table, rf_px=rf_px), out_dir, ["probe_eval.png"], dpi=150)


def _write_plain(fig, out_dir: Path, names: list[str]) -> None:
    """Write ``fig`` as it is laid out (no tight bounding box) at 150 dpi and close it."""
    try:
        for name in names:
            fig.savefig(Path(out_dir) / name, dpi=150)
    finally:
        plt.close(fig)


def _grid_column(maps) -> str | None:
    """What the columns of ``erf.png`` are when a model has several maps (None: one map each)."""
    units = list(dict.fromkeys(s.unit for s in maps))
    if len(units) == 1 and len({s.size for s in maps}) == 1:
        return None
    if len(units) == 1:
        return "size"
    return "stage" if units[0].stage is not None else "layer"


def save_erf_figures(comparison, out_dir: str | Path, maps, figures) -> None:
    """The figures of an ERF job: ``erf.png`` / ``erf.pdf`` (side by side, or a row per model
    and a column per map), and where they apply ``erf_sizes.png`` (metrics against the size),
    ``erf_series.png`` (against the checkpoint) and ``erf_overlay.png``.

    Args:
        comparison: the job's :class:`~hpx_analysis.erf.ErfComparison`.
        out_dir: the output folder.
        maps: the job's per-map :class:`~hpx_analysis.erf.settings.ErfSettings`.
        figures: the :class:`~hpx_analysis.erf.settings.ErfFigureSettings`.
    """
    from .erf import plot_erf, plot_erf_grid, plot_erf_series

    results, scale, cmap = comparison.results, figures.plot_scale, figures.cmap
    column = _grid_column(maps)
    if column is not None:
        _write_plain(plot_erf_grid(results, column=column, scale=scale, cmap=cmap), out_dir, ["erf.png", "erf.pdf"])
    elif figures.scale == "log" and cmap == "RdYlGn":
        save_erf_figure(comparison, out_dir)
    else:
        _write_plain(plot_erf(results, scale=scale, cmap=cmap), out_dir, ["erf.png", "erf.pdf"])
    frame = comparison.to_frame()
    if len({s.size for s in maps}) > 1:
        hue = "label" if "label" in frame.columns else "model"
        _write_plain(plot_erf_series(frame, "size", hue=hue), out_dir, ["erf_sizes.png"])
    if "checkpoint" in frame.columns and frame["checkpoint"].notna().sum() > 1:
        series = frame[frame["checkpoint"].notna()]
        _write_plain(plot_erf_series(series, "checkpoint", hue="model"), out_dir, ["erf_series.png"])
    if figures.overlay is not None:
        from ..io.images import load_rgb

        overlay = load_rgb(str(figures.overlay))
        _write_plain(plot_erf(results, scale=scale, cmap=cmap, overlay=overlay), out_dir, ["erf_overlay.png"])
