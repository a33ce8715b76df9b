"""``report.md``: each figure beside its key numbers and how it was made."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .settings import FIGURES, TITLES

__all__ = ["weights_by_model", "markdown_table", "write_report_md"]


def weights_by_model(table: pd.DataFrame) -> dict[str, str]:
    return {str(m): str(w) for m, w in table[["model", "weights"]].drop_duplicates().itertuples(index=False)}


def _kernel_result_from_npz(path: Path):
    """A :class:`~hpx_analysis.kernels.KernelResult` rebuilt from ``kernels_<model>.npz`` (for
    redrawing; the channels shown are the report's top-energy picks)."""
    from ..kernels import KernelResult, StageKernels

    data = np.load(path)
    stages = sorted({int(k.split("_")[0][5:]) for k in data.files if k.startswith("stage") and k.endswith("_mean")
                     and not k.endswith("kernel1d_mean")})
    result = KernelResult(model=str(data["model"]))
    for s in stages:
        p = f"stage{s}"
        one_d = f"{p}_kernel1d_mean" in data.files
        result.stages.append(StageKernels(
            stage=s, block=int(data[f"{p}_block"]), mixer="", kernel_ndim=1 if one_d else 2,
            feature_size=tuple(int(n) for n in data[f"{p}_feature_size"]), mean=data[f"{p}_mean"],
            picked=data[f"{p}_picked"], channel=int(data[f"{p}_channel"]), channel_auto=True,
            kernel1d_mean=data[f"{p}_kernel1d_mean"] if one_d else None,
            at=tuple(int(n) for n in data[f"{p}_at"]) if f"{p}_at" in data.files else None))
    return result, str(data["weights"])


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
    """A plain GitHub markdown table (index dropped)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _models_line(weights: dict[str, str]) -> str:
    return "; ".join(f"`{m}`: {w}" for m, w in weights.items())


def _runtime_section(d: Path) -> tuple[str, str]:
    df = pd.read_csv(d / "runtime.csv")
    info = json.loads((d / "runtime.json").read_text())
    ok = df.assign(value=[f"{v:.3g}" if s == "ok" else s.split(" (")[0]
                          for v, s in zip(df["median_ms"], df["status"])])
    table = ok.pivot_table(index=["mixer", "mode"], columns="resolution", values="value", aggfunc="first",
                           sort=False)
    table.columns = [f"{c} px (ms)" for c in table.columns]
    how = (f"One mixer layer ({info['dim']} channels, batch {info['batch']}, seeded random init) on "
           f"{info['device_description']}; median of {info['repeats']} timed calls after "
           f"{info['warmup']} warm-up call(s); resolutions {', '.join(map(str, info['resolutions']))} px "
           f"(patch size {info['patch_size']}). Timings depend on the machine.")
    return how, markdown_table(table.reset_index())


def _kernels_section(d: Path) -> tuple[str, str]:
    rows, weights = [], {}
    for path in sorted(d.glob("kernels_*.npz")):
        result, w = _kernel_result_from_npz(path)
        weights[result.model] = w
        for sk in result.stages:
            shape = f"{len(sk.kernel1d_mean)} taps (1D)" if sk.kernel_ndim == 1 else "x".join(map(str, sk.mean.shape))
            rows.append({"model": result.model, "stage": f"S{sk.stage + 1}", "block": sk.block,
                         "channel shown": sk.channel, "feature map": "x".join(map(str, sk.feature_size)),
                         "kernel": shape, "mean kernel, centre value": float(
                             sk.mean[sk.mean.shape[0] // 2, sk.mean.shape[1] // 2]) if sk.kernel_ndim == 2 else
                         float(sk.kernel1d_mean[len(sk.kernel1d_mean) // 2])})
    how = (f"Models: {_models_line(weights)}. First block of each stage; top row the channel mean "
           f"normalized to max |w| = 1, bottom row the channel with the most energy. H_b kernels are "
           f"wrapped onto the feature map for its centre pixel.")
    return how, markdown_table(pd.DataFrame(rows))


def _erf_section(d: Path) -> tuple[str, str]:
    df = pd.read_csv(d / "erf_metrics.csv")
    keep = ["model", "num_images", "size", "square_side_t0.2", "square_area_t0.2", "square_side_t0.5",
            "square_area_t0.5", "r50_px", "r90_px", "anisotropy", "dead_fraction"]
    table = df[[c for c in keep if c in df.columns]]
    first = json.loads(next(iter(sorted(d.glob("erf_*.json")))).read_text())
    how = (f"Models: {_models_line(weights_by_model(df))}. Gradient of the centre unit of the last feature "
           f"map (Luo et al. / RepLKNet protocol, method {df['method'].iloc[0]}), averaged over "
           f"{int(df['num_images'].iloc[0])} image(s) ({first.get('images_source', '')}) resized to "
           f"{int(df['size'].iloc[0])} px. Raw matrices: `erf_<model>.npy`.")
    return how, markdown_table(table)


def _coverage_section(d: Path) -> tuple[str, str]:
    df = pd.read_csv(d / "coverage.csv")
    table = df.pivot_table(index="model", columns="stage", values="coverage", aggfunc="mean", sort=False)
    table.columns = [f"S{int(c) + 1} mean" for c in table.columns]
    mixers = df.groupby("model", sort=False)["mixer"].agg(lambda s: "/".join(dict.fromkeys(s)))
    table.insert(0, "mixers", mixers)
    how = (f"Models: {_models_line(weights_by_model(df))}. Decay window >= 0.05, extent along the axes "
           f"through the kernel centre divided by the feature-map size, mean over channels; attention "
           f"counts as 2, convolutions as kernel size / feature-map size. Per block: `coverage.csv`.")
    return how, markdown_table(table.reset_index())


def _truncation_section(d: Path) -> tuple[str, str]:
    df = pd.read_csv(d / "truncation.csv")
    info = json.loads((d / "truncation.json").read_text())["settings"]
    metric = "top1" if (df["metric"] == "top1").any() else "agreement"
    sub = df[df["metric"].isin([metric, "kl"])].copy()
    sub["row"] = ["untruncated" if s == -1 else f"S{int(s) + 1}" for s in sub["stage"]]
    sub["col"] = ["" if s == -1 else f"r={r:g}" for s, r in zip(sub["stage"], sub["rel_size"])]
    parts = []
    for m in (metric, "kl"):
        t = sub[sub["metric"] == m]
        base = t[t["row"] == "untruncated"]["value"]
        piv = t[t["row"] != "untruncated"].pivot_table(index="row", columns="col", values="value",
                                                       aggfunc="first", sort=False)
        piv.insert(0, "untruncated", float(base.iloc[0]) if len(base) else math.nan)
        label = {"top1": "top-1 accuracy (%)", "agreement": "top-1 agreement with the untruncated model (%)",
                 "kl": "mean KL(untruncated || truncated) (nats)"}[m]
        parts.append(f"{label}:\n\n" + markdown_table(piv.reset_index().rename(columns={"row": "stage"})))
    labels = "IN-1k labels" if info["labels"] else f"no labels ({info['no_labels_reason']})"
    how = (f"Models: {_models_line(weights_by_model(df))}. {info['num_images']} image(s) "
           f"({info['images']}; {labels}) at the model's evaluation size; one stage at a time, every "
           f"long-kernel tap outside a centred {info['shape']} window of relative size r is zeroed.")
    return how, "\n\n".join(parts)


_SECTION_WRITERS = {"runtime": _runtime_section, "kernels": _kernels_section, "erf": _erf_section,
                    "coverage": _coverage_section, "truncation": _truncation_section}
_FIGURE_FILES = {"runtime": ["runtime.png"], "erf": ["erf.png"], "coverage": ["coverage.png"],
                 "truncation": ["truncation.png"]}


def write_report_md(out: Path, manifest: dict) -> Path:
    """``report.md``: how the report was made, then each figure with its key numbers."""
    out = Path(out)
    s = manifest["settings"]
    lines = [f"# HyenaPixel analysis report ({s['name']} settings)", ""]
    lines += [f"Generated by `{manifest['command']}`; settings and times in `report.json`.", ""]
    if manifest.get("random_init_models"):
        lines += [f"**Weights: {', '.join(f'`{m}`' for m in manifest['random_init_models'])} use a seeded "
                  f"random init, not trained weights** (the figures show the analyses on untrained "
                  f"models; the figure titles say so too). Regenerate with published weights as described "
                  f"in the README.", ""]
    v = manifest["versions"]
    lines += ["| | |", "| --- | --- |",
              f"| device | {manifest['device']} ({manifest['device_description']}) |",
              f"| images | {manifest['images']} |",
              f"| seed | {manifest['seed']} |",
              "| versions | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |",
              f"| total time | {manifest['total_seconds']:.0f} s |", ""]
    lines += ["Settings: " + "; ".join(s["notes"]), ""]
    for section in sorted(manifest["sections"], key=lambda k: FIGURES[k]):
        d = out / section
        how, table = _SECTION_WRITERS[section](d)
        secs = manifest["seconds"][section]
        lines += [f"## Fig. {FIGURES[section]}: {TITLES[section]}", ""]
        files = _FIGURE_FILES.get(section) or [p.name for p in sorted(d.glob("kernels_*.png"))]
        lines += [f"![{section} {f}]({section}/{f})" for f in files] + [""]
        lines += [f"{how} Time: {secs:.1f} s. Data: `{section}/`.", "", table, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
