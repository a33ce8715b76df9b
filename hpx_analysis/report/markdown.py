"""``report.md``: each figure beside its key numbers and how it was made."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..erf.metrics import ANISOTROPY, DEAD_FRACTION, R50_PX, R90_PX, square_key
from ..plotting.labels import stage_label

# The ERF metrics (columns of erf_metrics.csv) that report.md shows, in this order.
ERF_TABLE_METRICS = (
    *(square_key(t, kind) for t in (0.2, 0.5) for kind in ("side", "area")),
    R50_PX,
    R90_PX,
    ANISOTROPY,
    DEAD_FRACTION,
)

__all__ = [
    "weights_by_model",
    "markdown_table",
    "write_report_md",
    "runtime_markdown",
    "kernels_markdown",
    "erf_markdown",
    "coverage_markdown",
    "truncation_markdown",
]


def weights_by_model(table: pd.DataFrame) -> dict[str, str]:
    """The weights of each model of a result table.

    Args:
        table: a frame with ``model`` and ``weights`` columns.

    Returns:
        dict[str, str]: model -> weights, in the table's order.
    """
    return {str(m): str(w) for m, w in table[["model", "weights"]].drop_duplicates().itertuples(index=False)}


# ----------------------------------------------------------------------------- report.md


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(df: pd.DataFrame) -> str:
    """A plain GitHub markdown table (index dropped).

    Args:
        df: the table.

    Returns:
        str: its markdown lines.
    """
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _models_line(weights: dict[str, str]) -> str:
    return "; ".join(f"`{m}`: {w}" for m, w in weights.items())


def runtime_markdown(result) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        result: a :class:`~hpx_analysis.runtime.RuntimeResult`.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    df, info = result.to_frame(), result.settings
    ok = df.assign(value=[f"{v:.3g}" if s == "ok" else s.split(" (")[0] for v, s in zip(df["p10_ms"], df["status"])])
    table = ok.pivot_table(index=["mixer", "mode"], columns="resolution", values="value", aggfunc="first", sort=False)
    table.columns = [f"{c} px (ms)" for c in table.columns]
    how = (
        f"One mixer layer ({info['dim']} channels, batch {info['batch']}, seeded random init) on "
        f"{info['device_description']}; the 10th percentile of {info['repeats']} to {info['max_repeats']} timed "
        f"calls (until it is stable) after {info['warmup']} warm-up call(s); resolutions "
        f"{', '.join(map(str, info['resolutions']))} px (patch size {info['patch_size']}). Timings depend on "
        "the machine and its load; runtime.csv has the median, the 90th percentile and the spread."
    )
    violations = info.get("monotonicity_violations") or []
    if violations:
        how += " Not monotone where the computation is (a busy machine): " + "; ".join(map(str, violations)) + "."
    else:
        how += " Forward is at most forward + backward and each mixer's time grows with the resolution."
    return how, markdown_table(table.reset_index())


def kernels_markdown(results) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        results: a list of :class:`~hpx_analysis.kernels.KernelResult`.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    rows, weights = [], {}
    for result in sorted(results, key=lambda r: r.model):  # as listed in the folder
        weights[result.model] = result.weights
        for r in result.to_frame().itertuples(index=False):
            rows.append(
                {
                    "model": r.model,
                    "stage": stage_label(r.stage),
                    "block": r.block,
                    "channel shown": r.channel,
                    "feature map": r.feature_size,
                    "kernel": r.kernel,
                    "mean kernel, centre value": r.mean_centre,
                }
            )
    how = (
        f"Models: {_models_line(weights)}. First block of each stage; top row the channel mean "
        f"normalized to max |w| = 1, bottom row the channel with the most energy. H_b kernels are "
        f"wrapped onto the feature map for its centre pixel."
    )
    return how, markdown_table(pd.DataFrame(rows))


def erf_markdown(comparison) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        comparison: an :class:`~hpx_analysis.erf.ErfComparison`.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    df = comparison.to_frame()
    keep = ["model", "num_images", "size", *ERF_TABLE_METRICS]
    table = df[[c for c in keep if c in df.columns]]
    first = min(comparison.results, key=lambda r: r.label)  # as listed in the folder
    how = (
        f"Models: {_models_line(weights_by_model(df))}. Gradient of the centre unit of the last feature "
        f"map (Luo et al. / RepLKNet protocol, method {df['method'].iloc[0]}), averaged over "
        f"{int(df['num_images'].iloc[0])} image(s) ({first.run.get('images_source', '')}) resized to "
        f"{int(df['size'].iloc[0])} px. Raw matrices: `erf_<model>.npy`."
    )
    return how, markdown_table(table)


def coverage_markdown(result) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        result: a :class:`~hpx_analysis.coverage.CoverageResult`.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    df = result.to_frame()
    table = df.pivot_table(index="model", columns="stage", values="coverage", aggfunc="mean", sort=False)
    table.columns = [f"{stage_label(c)} mean" for c in table.columns]
    mixers = df.groupby("model", sort=False)["mixer"].agg(lambda s: "/".join(dict.fromkeys(s)))
    table.insert(0, "mixers", mixers)
    threshold = 0.05 if result.threshold is None else result.threshold
    how = (
        f"Models: {_models_line(weights_by_model(df))}. Decay window >= {threshold:g}, extent along the axes "
        f"through the kernel centre divided by the feature-map size, mean over channels; attention "
        f"counts as 2, convolutions as kernel size / feature-map size. Per block: `coverage.csv`."
    )
    return how, markdown_table(table.reset_index())


def truncation_markdown(comparison) -> tuple[str, str]:
    """The section's text in ``report.md``.

    Args:
        comparison: a :class:`~hpx_analysis.truncation.TruncationComparison`.

    Returns:
        tuple[str, str]: how it was made, and its markdown tables.
    """
    df = comparison.to_frame()
    info = comparison.settings
    metric = "top1" if (df["metric"] == "top1").any() else "agreement"
    sub = df[df["metric"].isin([metric, "kl"])].copy()
    sub["row"] = [stage_label(s) for s in sub["stage"]]
    sub["col"] = ["" if s == -1 else f"r={r:g}" for s, r in zip(sub["stage"], sub["rel_size"])]
    parts = []
    for m in (metric, "kl"):
        t = sub[sub["metric"] == m]
        base = t[t["row"] == "untruncated"]["value"]
        piv = t[t["row"] != "untruncated"].pivot_table(
            index="row", columns="col", values="value", aggfunc="first", sort=False
        )
        piv.insert(0, "untruncated", float(base.iloc[0]) if len(base) else math.nan)
        label = {
            "top1": "top-1 accuracy (%)",
            "agreement": "top-1 agreement with the untruncated model (%)",
            "kl": "mean KL(untruncated || truncated) (nats)",
        }[m]
        parts.append(f"{label}:\n\n" + markdown_table(piv.reset_index().rename(columns={"row": "stage"})))
    labels = "IN-1k labels" if info["labels"] else f"no labels ({info['no_labels_reason']})"
    how = (
        f"Models: {_models_line(weights_by_model(df))}. {info['num_images']} image(s) "
        f"({info['images']}; {labels}) at the model's evaluation size; one stage at a time, every "
        f"long-kernel tap outside a centred {info['shape']} window of relative size r is zeroed."
    )
    return how, "\n\n".join(parts)


def write_report_md(out: Path, manifest: dict, results: dict, table: dict | None = None) -> Path:
    """``report.md``: how the report was made, then each section with its figures and key numbers.

    Args:
        out: the report folder.
        manifest: what ``report.json`` holds.
        results: section -> its result, in memory.
        table: the sections (default :data:`~hpx_analysis.report.sections.SECTION_TABLE`).

    Returns:
        Path: the file written.
    """
    from .sections import SECTION_TABLE

    table = SECTION_TABLE if table is None else table
    out = Path(out)
    s = manifest["settings"]
    lines = [f"# HyenaPixel analysis report ({s['name']} settings)", ""]
    lines += [f"Generated by `{manifest['command']}`; settings and times in `report.json`.", ""]
    if manifest.get("random_init_models"):
        lines += [
            f"**Weights: {', '.join(f'`{m}`' for m in manifest['random_init_models'])} use a seeded "
            f"random init, not trained weights** (the figures show the analyses on untrained "
            f"models; the figure titles say so too). Regenerate with published weights as described "
            f"in the README."
            + (
                " The probe section at the end is the exception: its small probe models carry trained "
                "weights bundled with the package."
                if "probe" in manifest["sections"]
                else ""
            ),
            "",
        ]
    v = manifest["versions"]
    lines += [
        "| | |",
        "| --- | --- |",
        f"| device | {manifest['device']} ({manifest['device_description']}) |",
        f"| images | {manifest['images']} |",
        f"| seed | {manifest['seed']} |",
        "| versions | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |",
        f"| total time | {manifest['total_seconds']:.0f} s |",
        "",
    ]
    lines += ["Settings: " + "; ".join(s["notes"]), ""]
    for section in sorted(manifest["sections"], key=lambda k: table[k].figure or 99):
        entry, result = table[section], results[section]
        how, tables = entry.markdown(result)
        secs = manifest["seconds"][section]
        heading = f"Fig. {entry.figure}: {entry.title}" if entry.figure else entry.title
        lines += [f"## {heading}", ""]
        lines += [f"![{section} {f}]({section}/{f})" for f in entry.figure_files(result)] + [""]
        lines += [f"{how} Time: {secs:.1f} s. Data: `{section}/`.", "", tables, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
