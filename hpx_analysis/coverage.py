"""Relative feature-map coverage of every token mixer (the paper's Fig. 6), as tables.

Learned decay windows (H_px: ``exp(-D |deltas|) + shift`` on the 2D kernel grid): every
window value below ``threshold`` (default 0.05) is set to zero and the *diameter* of the
remaining non-zero region is divided by the feature-map size the kernel was built for
(56/28/14/7 for 224 px models). Two readings of "diameter":

- ``"axis"`` (default, the paper's reading): the extent of the non-zero taps along the
  two axes through the kernel centre, i.e. on the centre row (and the centre column) the
  number of taps from the outermost non-zero tap on one side to the outermost on the
  other, inclusive; 0 when none is non-zero. Coverage is the mean of
  ``row extent / w`` and ``column extent / h``.
- ``"area"``: the diameter of the disk with the same area as the non-zero region,
  ``2 * sqrt(count / pi)`` taps, divided by ``sqrt(h * w)``.

Each channel has its own window; a block's coverage is the mean over its channels
(per-channel values are returned too). Other mixers, so that mixed models share one axis:
attention counts as 2; a convolution (ConvFormer's SepConv, pooling, long kernels
without a window such as the explicit and separable ablations) as kernel size /
feature-map size. H_b and causal Hyena windows live on the 1D token axis of the
raster-flattened feature map: their coverage is the extent of non-zero taps (in tokens)
divided by the token count ``L = h * w`` (an extra the paper does not plot).

Feature-map sizes: long mixers carry their own (``feature_size``); other mixers of this
package's models use the model's ``feature_sizes``; timm models use their
``pretrained_cfg`` input size divided by the stage's reduction (``feature_info``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import is_long_conv_mixer, iter_token_mixers
from .plotting.labels import weights_tag
from .settings import Hooks, RunContext, Settings

__all__ = [
    "CoverageSettings",
    "coverage_job",
    "DIAMETER_READINGS",
    "CoverageResult",
    "window_coverage_2d",
    "window_extent_1d",
    "axis_extents",
    "mixer_label",
    "model_coverage",
    "stage_feature_size",
]

DIAMETER_READINGS = ("axis", "area")
BLOCKS_FILE, CHANNELS_FILE = "coverage.csv", "coverage_channels.csv"
ATTENTION_COVERAGE = 2.0


@dataclass
class CoverageResult:
    """``blocks``: one row per block (model, stage, block, mixer, coverage, depth,
    source, diameter, feature_size, and weights when known); ``channels``: one row per
    channel of windowed mixers (model, stage, block, mixer, channel, coverage, diameter,
    weights); ``notes``: mixers that were skipped and why; ``threshold`` and ``reading``:
    how the diameter was measured. Files: ``coverage.csv`` and ``coverage_channels.csv``
    (the notes and settings are not written)."""

    blocks: pd.DataFrame
    channels: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    threshold: float | None = None
    reading: str | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.blocks

    def save(self, out_dir: str | Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.blocks.to_csv(out_dir / BLOCKS_FILE, index=False)
        self.channels.to_csv(out_dir / CHANNELS_FILE, index=False)
        return out_dir

    @classmethod
    def load(cls, out_dir: str | Path) -> CoverageResult:
        out_dir = Path(out_dir)
        return cls(pd.read_csv(out_dir / BLOCKS_FILE), pd.read_csv(out_dir / CHANNELS_FILE))

    @classmethod
    def concat(cls, results: Sequence[CoverageResult]) -> CoverageResult:
        """Several models' results as one (the settings of the first)."""
        if not results:
            raise ValueError("no coverage results to combine")
        return cls(
            pd.concat([r.blocks for r in results], ignore_index=True),
            pd.concat([r.channels for r in results], ignore_index=True),
            [n for r in results for n in r.notes],
            results[0].threshold,
            results[0].reading,
        )


def _as_tensor(a) -> torch.Tensor:
    return a.detach().double() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _extent(mask: torch.Tensor) -> torch.Tensor:
    """Inclusive distance between the first and last True along the last axis (0 if none)."""
    n = mask.shape[-1]
    idx = torch.arange(n, dtype=torch.float64)
    any_ = mask.any(-1)
    first = torch.where(mask, idx, torch.full_like(idx, float(n))).amin(-1)
    last = torch.where(mask, idx, torch.full_like(idx, -1.0)).amax(-1)
    return torch.where(any_, last - first + 1, torch.zeros_like(first))


def axis_extents(window, threshold: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel ``(row extent, column extent)`` in taps of ``window >= threshold`` on
    the centre row and centre column of a ``(C, kh, kw)`` (or ``(kh, kw)``) window."""
    w = _as_tensor(window)
    if w.dim() == 2:
        w = w[None]
    keep = w >= threshold
    kh, kw = keep.shape[-2:]
    return _extent(keep[:, kh // 2, :]), _extent(keep[:, :, kw // 2])


def window_coverage_2d(
    window, feature_size, threshold: float = 0.05, reading: str = "axis"
) -> tuple[np.ndarray, np.ndarray]:
    """Per channel ``(coverage, diameter in taps)`` of a 2D window ``(C, kh, kw)``."""
    if reading not in DIAMETER_READINGS:
        raise ValueError(f"diameter reading must be one of {DIAMETER_READINGS}, got {reading!r}")
    h, w = (int(n) for n in feature_size)
    win = _as_tensor(window)
    if win.dim() == 2:
        win = win[None]
    if reading == "axis":
        row_ext, col_ext = axis_extents(win, threshold)
        diameter = (row_ext + col_ext) / 2
        coverage = (row_ext / w + col_ext / h) / 2
    else:
        count = (win >= threshold).flatten(1).sum(1).double()
        diameter = 2 * torch.sqrt(count / math.pi)
        coverage = diameter / math.sqrt(h * w)
    return coverage.numpy(), diameter.numpy()


def window_extent_1d(window, threshold: float = 0.05) -> np.ndarray:
    """Per channel extent in taps of ``window >= threshold`` for a ``(C, Lf)`` window."""
    w = _as_tensor(window)
    if w.dim() == 1:
        w = w[None]
    return _extent(w >= threshold).numpy()


def mixer_label(mixer: nn.Module) -> str:
    """Short name of a token mixer for tables and legends."""
    name = type(mixer).__name__
    table = {
        "HyenaPixel": "H_px",
        "HyenaPixelNoNorm": "H_px",
        "HyenaPixelExplicit": "H_px-explicit",
        "HyenaPixelSeparable": "H_px-separable",
        "BidirectionalHyena": "H_b",
        "BidirectionalHyenaNorm": "H_b",
        "CausalHyena": "Hyena-causal",
        "SepConv": "SepConv",
        "Attention": "Attention",
        "Pooling": "Pooling",
    }
    return table.get(name, name)


def stage_feature_size(model: nn.Module, stage: int) -> tuple[int, int] | None:
    """The feature map entering ``stage``'s blocks at the model's training resolution."""
    sizes = getattr(model, "feature_sizes", None)
    if sizes is not None and stage < len(sizes):
        return tuple(int(n) for n in sizes[stage])
    cfg = getattr(model, "pretrained_cfg", None) or {}
    info = getattr(model, "feature_info", None)
    input_size = cfg.get("input_size")
    if not input_size or not info:
        return None
    infos = list(info) if not hasattr(info, "get_dicts") else info.get_dicts()
    if stage >= len(infos) or "reduction" not in infos[stage]:
        return None
    red = int(infos[stage]["reduction"])
    return int(input_size[-2]) // red, int(input_size[-1]) // red


def _conv_kernel_size(mixer: nn.Module) -> tuple[int, int] | None:
    dw = getattr(mixer, "dwconv", None)
    if isinstance(dw, nn.Conv2d):
        return tuple(int(k) for k in dw.kernel_size)
    pool = getattr(mixer, "pool", None)
    if pool is not None and hasattr(pool, "kernel_size"):
        k = pool.kernel_size
        return (int(k), int(k)) if isinstance(k, int) else tuple(int(v) for v in k)
    ks = getattr(mixer, "kernel_size", None)
    if ks is not None:
        return (int(ks), int(ks)) if isinstance(ks, int) else tuple(int(v) for v in ks)
    return None


def _is_attention(mixer: nn.Module) -> bool:
    return "Attention" in type(mixer).__name__ or (hasattr(mixer, "qkv") and hasattr(mixer, "proj"))


@dataclass(frozen=True)
class CoverageSettings(Settings):
    """How coverage is measured.

    Args:
        threshold: window values below this are set to zero (the paper: 0.05).
        reading: ``"axis"`` (extent along the axes through the kernel centre, the paper's
            reading) or ``"area"`` (diameter of the disk with the non-zero region's area).
    """

    threshold: float = 0.05
    reading: str = "axis"

    def __post_init__(self) -> None:
        if self.reading not in DIAMETER_READINGS:
            raise ValueError(f"diameter reading must be one of {DIAMETER_READINGS}, got {self.reading!r}")


def model_coverage(
    model: nn.Module,
    settings: CoverageSettings | None = None,
    *,
    name: str = "",
    weights: str | None = None,
    **overrides,
) -> CoverageResult:
    """Coverage of every token mixer of ``model`` (see the module docstring).

    Args:
        model: a MetaFormer-style model.
        settings: threshold and diameter reading (default :class:`CoverageSettings`).
        name: the model's name in the tables (default its class name).
        weights: what the model carries; a last column of both tables when given.
        **overrides: settings fields replacing those of ``settings`` (e.g. ``reading="area"``).

    Returns:
        CoverageResult: one row per block and one per channel of windowed mixers.
    """
    settings = CoverageSettings.from_overrides(settings, **overrides)
    threshold, reading = settings.threshold, settings.reading
    name = name or type(model).__name__
    rows, ch_rows, notes = [], [], []
    for depth, (s, b, mixer) in enumerate(iter_token_mixers(model)):
        base = dict(model=name, stage=s, block=b, mixer=mixer_label(mixer), depth=depth)
        if is_long_conv_mixer(mixer):
            row, channel_rows = _long_conv_coverage(mixer, base, threshold, reading)
            ch_rows += channel_rows
        else:
            row = _other_coverage(model, mixer, base, reading)
        if row is None:
            notes.append(
                f"{name} stage {s} block {b}: {type(mixer).__name__} has no known kernel size or "
                "feature-map size; skipped"
            )
        else:
            rows.append(row)
    if not rows:
        notes.append(f"{name} has no MetaFormer token mixers (no stages[i][j].token_mixer); nothing to measure")
    block_cols = ["model", "stage", "block", "mixer", "coverage", "depth", "source", "diameter", "feature_size"]
    ch_cols = ["model", "stage", "block", "mixer", "channel", "coverage", "diameter"]
    blocks, channels = pd.DataFrame(rows, columns=block_cols), pd.DataFrame(ch_rows, columns=ch_cols)
    if weights is not None:
        blocks, channels = blocks.assign(weights=weights), channels.assign(weights=weights)
    return CoverageResult(blocks, channels, notes, threshold, reading)


def _long_conv_coverage(mixer: nn.Module, base: dict, threshold: float, reading: str) -> tuple[dict, list[dict]]:
    """A long-convolution mixer's block row and per-channel rows (window, or kernel size
    when it has no window)."""
    fs = tuple(int(n) for n in mixer.feature_size)
    win = mixer.window()
    if win is None:
        k = mixer.effective_kernel()
        if mixer.kernel_ndim == 2:
            kh, kw = k.shape[-2:]
            size = (kh / fs[1] + kw / fs[0]) / 2 if reading == "axis" else math.sqrt(kh * kw / (fs[0] * fs[1]))
            diam_v = (kh + kw) / 2 if reading == "axis" else math.sqrt(kh * kw)
        else:
            size, diam_v = k.shape[-1] / (fs[0] * fs[1]), float(k.shape[-1])
        return dict(base, coverage=float(size), source="kernel size", diameter=float(diam_v), feature_size=fs[0]), []
    if mixer.kernel_ndim == 2:
        cov, diam = window_coverage_2d(win, fs, threshold, reading)
        source = "window"
    else:
        diam = window_extent_1d(win, threshold)
        cov = diam / (fs[0] * fs[1])
        source = "window (1D token axis)"
    keys = {k: base[k] for k in ("model", "stage", "block", "mixer")}
    channel_rows = [
        dict(keys, channel=c, coverage=float(cv), diameter=float(dm)) for c, (cv, dm) in enumerate(zip(cov, diam))
    ]
    row = dict(base, coverage=float(np.mean(cov)), source=source, diameter=float(np.mean(diam)), feature_size=fs[0])
    return row, channel_rows


def _other_coverage(model: nn.Module, mixer: nn.Module, base: dict, reading: str) -> dict | None:
    """Attention (coverage 2) or a convolution (kernel size / feature-map size); None when
    the kernel or feature-map size is unknown."""
    fs = stage_feature_size(model, base["stage"])
    if _is_attention(mixer):
        return dict(
            base,
            coverage=ATTENTION_COVERAGE,
            source="attention",
            diameter=float("nan"),
            feature_size=fs[0] if fs else float("nan"),
        )
    ks = _conv_kernel_size(mixer)
    if ks is None or fs is None:
        return None
    if reading == "axis":
        cov, diam_v = (ks[1] / fs[1] + ks[0] / fs[0]) / 2, (ks[0] + ks[1]) / 2
    else:
        cov, diam_v = math.sqrt(ks[0] * ks[1] / (fs[0] * fs[1])), math.sqrt(ks[0] * ks[1])
    return dict(base, coverage=float(cov), source="kernel size", diameter=float(diam_v), feature_size=fs[0])


def coverage_job(
    models: Iterable,
    settings: CoverageSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> CoverageResult:
    """The coverage of several models, written as ``hpx-analyze coverage`` writes it.

    Models without token mixers are left out (their notes go to ``hooks.log``). Files in
    ``run.out_dir`` (None: nothing written): ``coverage.csv``, ``coverage_channels.csv``
    and ``coverage.png``.

    Args:
        models: specs or loaded models (:func:`~hpx_analysis.jobs.loaded_models`).
        settings: threshold and diameter reading (default :class:`CoverageSettings`).
        run: device, seed and output folder.
        hooks: ``log`` gets the notes and one line per model.

    Returns:
        CoverageResult: every measured model's rows.

    Raises:
        ValueError: none of the models has token mixers to measure.
    """
    from .jobs import loaded_models

    settings, run, hooks = settings or CoverageSettings(), run or RunContext(), hooks or Hooks()
    results = []
    for loaded in loaded_models(models, run):
        res = model_coverage(loaded.model, settings, name=loaded.name, weights=loaded.weights)
        for note in res.notes:
            hooks.log(f"note: {note}")
        if res.blocks.empty:
            continue
        if not res.blocks.source.str.startswith("window").any():
            hooks.log(
                f"{loaded.name}: no long convolutions with a decay window; "
                "its convolution/attention values are reported"
            )
        results.append(res)
        summary = res.blocks.groupby("stage").coverage.mean().round(3).tolist()
        hooks.log(f"{loaded.name} ({weights_tag(loaded.weights)}): mean coverage per stage {summary}")
    if not results:
        raise ValueError("none of the models has MetaFormer token mixers to measure; nothing written")
    result = CoverageResult.concat(results)
    if run.out_dir is not None and run.is_main:
        from .plotting.files import save_coverage_figure

        result.save(run.out_dir)
        save_coverage_figure(result, run.out_dir)
    return result
