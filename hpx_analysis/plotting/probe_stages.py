"""The two-stage probes' figures: accuracy against distance with Wilson bands and the measured
reach with its interval, and the per-stage truncation of the far quarter of distances."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from .labels import weights_tag

__all__ = ["plot_accuracy_with_reach", "plot_stage_truncation", "STAGE_COLOURS"]

STAGE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def plot_accuracy_with_reach(table: pd.DataFrame, reach: dict | None = None, ax=None, chance: float = 0.25):
    """:func:`~hpx_analysis.plotting.probe.plot_probe_accuracy` with each model's 95 % Wilson
    band and, where ``reach`` has the model, its measured reach (dashed) with its interval shaded;
    the weights tags go into the title.

    Args:
        table: per-distance rows (``model, distance_px, accuracy, ci_low, ci_high, weights``).
        reach: model -> :func:`~hpx_analysis.probe.intervals.measured_reach` dict.
        ax: the axes to draw into (None: a new figure).
        chance: the chance level (dotted).

    Returns:
        The figure.
    """
    from .probe import plot_probe_accuracy

    reach = {m: r for m, r in (reach or {}).items() if not math.isnan(r["reach_px"])}
    fig = plot_probe_accuracy(table, ax, chance, rf_px={m: r["reach_px"] for m, r in reach.items()})
    ax = ax if ax is not None else fig.axes[0]
    # plot_probe_accuracy labels each line "model [weights tag]"
    lines = {line.get_label().split(" [")[0]: line for line in ax.lines}
    for model, sub in table.groupby("model", sort=False):
        sub, colour = sub.sort_values("distance_px"), lines[model].get_color()
        ax.fill_between(sub.distance_px, 100 * sub.ci_low, 100 * sub.ci_high, color=colour, alpha=0.15, lw=0)
        r = reach.get(model)
        if r and r["reach_high_px"] > r["reach_low_px"]:  # NaN bounds compare False
            ax.axvspan(r["reach_low_px"], r["reach_high_px"], color=colour, alpha=0.1)
    if "weights" in table:
        tags = sorted({weights_tag(w) for w in table.weights})
        ax.set_title(f"weights: {', '.join(tags)}; dashed: measured reach", fontsize=9)
    fig.tight_layout()
    return fig


def _stage_panel(ax, far: pd.DataFrame, model: str, known_stage: int | None, chance: float) -> None:
    """One model's panel: a line per truncated stage, the untruncated level, chance, the known answer."""
    sub = far[far.model == model]
    base = sub[sub.stage == -1]
    if not base.empty:
        ax.axhline(100 * base.accuracy.iloc[0], color="black", ls="--", lw=0.8, label="untruncated")
    for stage, g in sub[sub.stage >= 0].groupby("stage"):
        g = g.sort_values("rel_size")
        colour = STAGE_COLOURS[int(stage) % len(STAGE_COLOURS)]
        ax.plot(g.rel_size, 100 * g.accuracy, marker="o", ms=3, color=colour, label=f"stage {stage} truncated")
        ax.fill_between(g.rel_size, 100 * g.ci_low, 100 * g.ci_high, color=colour, alpha=0.2)
    if sub[sub.stage >= 0].empty:
        ax.text(0.5, 0.5, "no long kernels to truncate", transform=ax.transAxes, ha="center", fontsize=8)
    ax.axhline(100 * chance, color="grey", ls=":", lw=1, label="chance")
    if known_stage is not None:
        smallest = sub[sub.stage >= 0].rel_size.min()
        x = smallest if not math.isnan(smallest) else 0.125
        colour = STAGE_COLOURS[known_stage % len(STAGE_COLOURS)]
        ax.plot([x], [100 * chance], marker="*", ms=12, ls="none", color=colour, mec="black",
                label=f"known: stage {known_stage} drops to chance")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 102)
    ax.set_xlabel("relative window size")


def plot_stage_truncation(
    far: pd.DataFrame, weights: dict | None = None, axes=None, known: dict | None = None, chance: float = 0.25
):
    """The per-stage truncation figure: a panel per model, a line per truncated stage of the
    far-quarter accuracy against the relative window size with its Wilson band, the
    untruncated level (dashed), chance (dotted) and the known answer (a star at chance in the
    stage's colour).

    Args:
        far: rows ``model, stage, rel_size, accuracy, ci_low, ci_high`` (stage -1: untruncated).
        weights: model -> weights description (a short tag goes into each panel's title).
        axes: one axes per model (None: a new figure with a row of panels).
        known: model -> the stage whose truncation must drop to chance (default
            :data:`~hpx_analysis.probe.analysis.FAR_STAGE`).
        chance: the chance level.

    Returns:
        The figure.
    """
    from ..probe.analysis import FAR_STAGE

    known = FAR_STAGE if known is None else known
    models = list(dict.fromkeys(far.model))
    if axes is None:
        fig, axes = plt.subplots(
            1, len(models), figsize=(3.2 * len(models), 3.8), sharex=True, sharey=True, squeeze=False
        )
        axes = axes[0]
    fig = axes[0].figure
    for ax, model in zip(axes, models):
        _stage_panel(ax, far, model, known.get(model), chance)
        tag = weights_tag((weights or {}).get(model))
        ax.set_title(f"{model}" + (f"\n[{tag}]" if tag else ""), fontsize=9)
    axes[0].set_ylabel("far-quarter accuracy (%)")
    entries: dict = {}  # one legend for every panel's lines
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncol=len(entries), fontsize=7)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig
