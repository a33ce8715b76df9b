"""The figure report: settings, model/weights choice, ``report.md`` / ``report.json`` and a
numeric comparison of two report folders.

The report runs the analysis commands (see ``hpx_analysis.cli.report``) into one folder with
one subfolder per analysis (``runtime/``, ``kernels/``, ``erf/``, ``coverage/``,
``truncation/``); this module decides what they run with, puts weights into the titles of
the figures whose commands do not, and writes ``report.md`` (each figure beside its key
numbers, read back from the files the commands wrote) and ``report.json`` (the settings,
models, weights, images, device, versions and time per section).

Two presets: :data:`QUICK` (minutes on a 2-core CPU; seeded random init by default so the
numbers are reproducible anywhere) and :data:`FULL` (the paper's settings, published weights
when available).
"""
from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ReportSettings", "QUICK", "FULL", "SECTIONS", "SECTION_MODELS", "FIGURES", "weights_chooser",
    "versions", "weights_by_model", "markdown_table", "write_report_md", "write_manifest",
    "compare_reports",
    "RTOL", "ATOL", "ARRAY_ATOL_REL", "VOLATILE_KEYS", "TIMING_COLUMNS",
]

# Execution order; report.md lists them by figure number.
SECTIONS = ("kernels", "coverage", "erf", "truncation", "runtime")
SECTION_MODELS = {
    "kernels": ("hpx_s18", "hb_s18"),                    # Fig. 4
    "erf": ("conv_s18", "hpx_s18", "hb_s18"),            # Fig. 5
    "coverage": ("hpx_s18", "c_hpx_s18", "hpx_a_s18"),   # Fig. 6
    "truncation": ("hpx_s18",),                          # Fig. 7
    "runtime": (),                                       # Fig. 2: single mixer layers, no model
}
FIGURES = {"runtime": 2, "kernels": 4, "erf": 5, "coverage": 6, "truncation": 7}
TITLES = {
    "runtime": "Runtime of one token-mixer layer against input resolution",
    "kernels": "Learned long-convolution kernels per stage",
    "erf": "Effective receptive fields",
    "coverage": "Relative feature-map coverage of the learned windows",
    "truncation": "Kernel truncation per stage",
}


@dataclass(frozen=True)
class ReportSettings:
    """What each section runs with. ``None`` means the command's own default."""

    name: str
    weights: str                               # default WEIGHTS for every model
    erf_size: int
    erf_num_images: int
    truncation_num_images: int | None          # None: every image given
    truncation_rel_sizes: tuple[float, ...]
    truncation_batch_size: int
    runtime_resolutions: tuple[int, ...] | None
    runtime_repeats: int | None
    runtime_warmup: int | None
    runtime_mode: str = "both"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


QUICK = ReportSettings(
    name="quick", weights="random", erf_size=256, erf_num_images=3, truncation_num_images=4,
    truncation_rel_sizes=(0.25, 0.5, 1.0, 2.0), truncation_batch_size=4, runtime_resolutions=(112, 224),
    runtime_repeats=3, runtime_warmup=1,
    notes=("seeded random init unless --model-weights says otherwise, so the numbers are the same on "
           "every machine (CI checks the committed figures/ against a fresh run)",
           "ERF: 3 images at 256 px; truncation: 4 images at the model's 224 px evaluation size, "
           "relative sizes 0.25, 0.5, 1, 2; runtime: 112 and 224 px, 1 warm-up and 3 timed calls"),
)
FULL = ReportSettings(
    name="full", weights="auto", erf_size=1024, erf_num_images=50, truncation_num_images=None,
    truncation_rel_sizes=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0), truncation_batch_size=16,
    runtime_resolutions=None, runtime_repeats=None, runtime_warmup=None,
    notes=("the paper's settings: ERF over 50 images at 1024 px (Fig. 5), truncation over every image "
           "given (the paper: the 50,000 IN-1k validation images, Fig. 7), runtime at the command's "
           "default resolutions (224..896 px on CPU, 224..2240 px on CUDA)",),
)

# ----------------------------------------------------------------------------- weights


def weights_chooser(default: str, overrides: Sequence[str] | None = None):
    """A function ``alias -> "alias=WEIGHTS"``.

    ``overrides``: ``WEIGHTS`` (for every model) or ``NAME=WEIGHTS`` (one model; NAME is a
    name or alias), later ones winning. Raises ``WeightsError`` for unknown names.
    """
    from .weights import parse_model_spec

    every = default
    per_model: dict[str, str] = {}
    for text in overrides or ():
        name, sep, value = str(text).partition("=")
        if sep:
            if not value.strip():
                parse_model_spec(text)  # raises the standard message for an empty WEIGHTS part
            per_model[parse_model_spec(name).name] = value.strip()
        else:
            every = name.strip()
    known = {parse_model_spec(a).name for models in SECTION_MODELS.values() for a in models}
    unused = sorted(set(per_model) - known)
    if unused:
        raise ValueError(f"--model-weights names {', '.join(unused)}, which the report does not use "
                         f"(it uses {', '.join(sorted(known))})")

    def choose(alias: str) -> str:
        canonical = parse_model_spec(alias).name
        return f"{alias}={per_model.get(canonical, every)}"

    return choose


def versions() -> dict:
    import timm
    import torch

    from . import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "hpx_analysis": __version__}


# ----------------------------------------------------------------------------- figure titles


def weights_by_model(table: pd.DataFrame) -> dict[str, str]:
    return {str(m): str(w) for m, w in table[["model", "weights"]].drop_duplicates().itertuples(index=False)}


def _kernel_result_from_npz(path: Path):
    """A :class:`~hpx_analysis.kernels.KernelResult` rebuilt from ``kernels_<model>.npz`` (for
    redrawing; the channels shown are the report's top-energy picks)."""
    from .kernels import KernelResult, StageKernels

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


def write_manifest(out: Path, manifest: dict) -> Path:
    path = Path(out) / "report.json"
    path.write_text(json.dumps(manifest, indent=1, default=str))
    return path


# ----------------------------------------------------------------------------- comparison

RTOL = 1e-4
ATOL = 1e-6
# Arrays (raw ERF matrices, kernel maps) also get an absolute tolerance of this fraction of
# their largest magnitude: float32 gradients summed over a whole image differ in their last
# bits between CPUs and thread counts (about 4e-6 of the maximum for the quick ERFs, 1 vs 2
# threads), which elementwise rtol/atol alone would flag in the near-zero tail.
ARRAY_ATOL_REL = 1e-4
# JSON keys whose values depend on the machine, the run or the install location, not on the
# analysis: never compared (their presence is).
VOLATILE_KEYS = frozenset({
    "seconds", "seconds_per_image", "total_seconds", "command", "versions", "device_description",
    "threads", "images_used", "images_skipped", "images_source", "images", "created",
})
# runtime.csv columns that hold timings: compared for presence only.
TIMING_COLUMNS = frozenset({"median_ms", "min_ms"})
DATA_SUFFIXES = (".csv", ".json", ".npy", ".npz")


def _close(a, b, rtol: float, atol: float) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                            rtol=rtol, atol=atol, equal_nan=True))


def _compare_json(a, b, where: str, rtol: float, atol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(f"{where}: keys differ (only committed: {sorted(set(a) - set(b))}, "
                       f"only new: {sorted(set(b) - set(a))})")
        for k in sorted(set(a) & set(b)):
            if k not in VOLATILE_KEYS:
                _compare_json(a[k], b[k], f"{where}.{k}", rtol, atol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items committed, {len(b)} new")
        for i, (x, y) in enumerate(zip(a, b)):
            _compare_json(x, y, f"{where}[{i}]", rtol, atol, out)
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        if a != b:
            out.append(f"{where}: committed {a!r}, new {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not _close(a, b, rtol, atol):
            out.append(f"{where}: committed {a!r}, new {b!r}")
    elif a != b:
        out.append(f"{where}: committed {a!r}, new {b!r}")


def _compare_frames(a: pd.DataFrame, b: pd.DataFrame, where: str, rtol: float, atol: float,
                    skip: Iterable[str], out: list[str]) -> None:
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        out.append(f"{where}: columns/shape differ (committed {list(a.columns)} {a.shape}, "
                   f"new {list(b.columns)} {b.shape})")
        return
    for col in a.columns:
        if col in skip:
            continue
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xa, ya = x.to_numpy(dtype=np.float64, na_value=np.nan), y.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isclose(xa, ya, rtol=rtol, atol=atol, equal_nan=True)
        else:
            bad = (x.astype(str) != y.astype(str)).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            out.append(f"{where}: column {col!r} differs in {int(bad.sum())} row(s), first row {i}: "
                       f"committed {x.iloc[i]!r}, new {y.iloc[i]!r}")


def _compare_arrays(a: np.ndarray, b: np.ndarray, where: str, rtol: float, atol: float, out: list[str]) -> None:
    if a.shape != b.shape:
        out.append(f"{where}: shape committed {a.shape}, new {b.shape}")
    elif a.dtype.kind in "fcib" and b.dtype.kind in "fcib":
        scale = float(np.nanmax(np.abs(a))) if a.size and not np.all(np.isnan(a)) else 0.0
        if not _close(a, b, rtol, max(atol, ARRAY_ATOL_REL * scale)):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            out.append(f"{where}: values differ (max abs difference {np.nanmax(diff):.3g})")
    elif not np.array_equal(a, b):
        out.append(f"{where}: committed {a!r}, new {b!r}")


def compare_reports(committed: Path, fresh: Path, rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Differences between two report folders, one line each (empty: they agree).

    Every file must exist in both (figures included). Data files (CSV, JSON, npy, npz) are
    compared by value: numbers within ``rtol``/``atol`` (``numpy.isclose``; for npy/npz arrays
    ``atol`` is at least :data:`ARRAY_ATOL_REL` times the array's largest magnitude), text exactly;
    :data:`VOLATILE_KEYS` of JSON files and the timing columns of ``runtime.csv`` only for
    their presence, since they depend on the machine."""
    committed, fresh = Path(committed), Path(fresh)
    files_a = {p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file()}
    files_b = {p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()}
    out: list[str] = []
    for name in sorted(files_a - files_b):
        out.append(f"{name}: committed but not produced any more")
    for name in sorted(files_b - files_a):
        out.append(f"{name}: produced but not committed")
    for name in sorted(files_a & files_b):
        a, b = committed / name, fresh / name
        if name.endswith(".csv"):
            skip = TIMING_COLUMNS if Path(name).name == "runtime.csv" else ()
            _compare_frames(pd.read_csv(a), pd.read_csv(b), name, rtol, atol, skip, out)
        elif name.endswith(".json"):
            _compare_json(json.loads(a.read_text()), json.loads(b.read_text()), name, rtol, atol, out)
        elif name.endswith(".npy"):
            _compare_arrays(np.load(a), np.load(b), name, rtol, atol, out)
        elif name.endswith(".npz"):
            za, zb = np.load(a), np.load(b)
            if set(za.files) != set(zb.files):
                out.append(f"{name}: arrays differ (committed {sorted(za.files)}, new {sorted(zb.files)})")
            for key in sorted(set(za.files) & set(zb.files)):
                _compare_arrays(za[key], zb[key], f"{name}[{key}]", rtol, atol, out)
    return out
