"""Plot of token-mixer runtime against input resolution (the paper's Fig. 2), log-log."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from ..runtime import MIXER_LABELS, MIXERS

__all__ = ["plot_runtime"]

MODE_STYLES = {"forward": "-", "forward_backward": "--"}
MODE_LABELS = {"forward": "forward", "forward_backward": "forward + backward"}


def plot_runtime(df: pd.DataFrame, ax=None, title: str | None = None):
    """Draw runtime (ms) against resolution (px) for each mixer and mode.

    The lines are the low-percentile estimate ``p10_ms`` (``median_ms`` in tables written
    before it existed), with a light band up to ``p90_ms`` where the table has it: the spread
    between calls. One colour per mixer, solid for forward and dashed for forward + backward;
    rows whose status starts with ``"oom"`` are marked with an ``x`` at the top edge of the
    axes at their resolution. Returns the figure.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.0, 4.8))
    else:
        fig = ax.figure
    if df.empty:
        raise ValueError("no runtime rows to plot")
    names = [m for m in MIXERS if m in set(df["mixer"])] + sorted(set(df["mixer"]) - set(MIXERS))
    colours = {m: f"C{i}" for i, m in enumerate(names)}
    top = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ok = df[df["status"] == "ok"]
    y = "p10_ms" if "p10_ms" in df.columns else "median_ms"
    if not ok.empty:
        sns.lineplot(
            data=ok,
            x="resolution",
            y=y,
            hue="mixer",
            hue_order=[n for n in names if n in set(ok["mixer"])],
            palette=colours,
            style="mode",
            style_order=[m for m in MODE_STYLES if m in set(ok["mode"])],
            dashes={"forward": "", "forward_backward": (4, 2)},
            markers={m: "o" for m in MODE_STYLES},
            markersize=5,
            estimator=None,
            legend=False,
            ax=ax,
        )
    if "p90_ms" in ok.columns:
        for (name, _), rows in ok.sort_values("resolution").groupby(["mixer", "mode"], sort=False):
            ax.fill_between(rows["resolution"], rows[y], rows["p90_ms"], color=colours[name], alpha=0.12, lw=0)
    oom = df[df["status"].str.startswith("oom")]
    any_oom = not oom.empty
    for (name, mode), rows in oom.groupby(["mixer", "mode"], sort=False):
        mark = 0.96 if mode == "forward" else 0.91
        ax.scatter(
            rows["resolution"], [mark] * len(rows), marker="x", s=30, color=colours[name], transform=top, clip_on=False
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    measured = df.loc[df["status"] == "ok", y]
    if any_oom and len(measured):  # headroom so that the OOM marks sit above every line
        low, high = measured.min(), measured.max()
        ax.set_ylim(low / 1.5, high * 4)
    resolutions = sorted(set(df["resolution"]))
    ax.xaxis.set_major_locator(FixedLocator(resolutions))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45 if len(resolutions) > 6 else 0)
    ax.set_xlabel("input resolution (px, patch size 4)")
    ax.set_ylabel("ms per layer (10th percentile; band to the 90th)" if y == "p10_ms" else "median ms per layer")
    ax.grid(True, which="both", alpha=0.3)
    if title is None:
        devices = ", ".join(sorted(set(df["device"].astype(str))))
        title = f"Token mixer runtime ({devices})"
    ax.set_title(title)
    handles = [Line2D([], [], color=colours[n], lw=2, label=MIXER_LABELS.get(n, n)) for n in names]
    handles += [
        Line2D([], [], color="0.3", ls=MODE_STYLES[m], label=MODE_LABELS[m])
        for m in MODE_STYLES
        if (df["mode"] == m).any()
    ]
    if any_oom:
        handles.append(Line2D([], [], color="0.3", marker="x", ls="", label="out of memory"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig
