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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import is_long_conv_mixer, iter_token_mixers

__all__ = [
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


def model_coverage(
    model: nn.Module, *, name: str = "", threshold: float = 0.05, reading: str = "axis", weights: str | None = None
) -> CoverageResult:
    """Coverage of every token mixer of ``model`` (see the module docstring); ``weights``
    (what the model carries) becomes a last column of both tables when given."""
    if reading not in DIAMETER_READINGS:
        raise ValueError(f"diameter reading must be one of {DIAMETER_READINGS}, got {reading!r}")
    name = name or type(model).__name__
    rows, ch_rows, notes = [], [], []
    for depth, (s, b, mixer) in enumerate(iter_token_mixers(model)):
        label = mixer_label(mixer)
        base = dict(model=name, stage=s, block=b, mixer=label, depth=depth)
        if is_long_conv_mixer(mixer):
            fs = tuple(int(n) for n in mixer.feature_size)
            win = mixer.window()
            if win is not None and mixer.kernel_ndim == 2:
                cov, diam = window_coverage_2d(win, fs, threshold, reading)
                source = "window"
            elif win is not None:
                diam = window_extent_1d(win, threshold)
                cov = diam / (fs[0] * fs[1])
                source = "window (1D token axis)"
            else:
                k = mixer.effective_kernel()
                if mixer.kernel_ndim == 2:
                    kh, kw = k.shape[-2:]
                    size = (kh / fs[1] + kw / fs[0]) / 2 if reading == "axis" else math.sqrt(kh * kw / (fs[0] * fs[1]))
                    diam_v = (kh + kw) / 2 if reading == "axis" else math.sqrt(kh * kw)
                else:
                    size, diam_v = k.shape[-1] / (fs[0] * fs[1]), float(k.shape[-1])
                rows.append(
                    dict(base, coverage=float(size), source="kernel size", diameter=float(diam_v), feature_size=fs[0])
                )
                continue
            for c, (cv, dm) in enumerate(zip(cov, diam)):
                ch_rows.append(
                    dict(model=name, stage=s, block=b, mixer=label, channel=c, coverage=float(cv), diameter=float(dm))
                )
            rows.append(
                dict(
                    base, coverage=float(np.mean(cov)), source=source, diameter=float(np.mean(diam)), feature_size=fs[0]
                )
            )
        elif _is_attention(mixer):
            fs = stage_feature_size(model, s)
            rows.append(
                dict(
                    base,
                    coverage=ATTENTION_COVERAGE,
                    source="attention",
                    diameter=float("nan"),
                    feature_size=fs[0] if fs else float("nan"),
                )
            )
        else:
            ks = _conv_kernel_size(mixer)
            fs = stage_feature_size(model, s)
            if ks is None or fs is None:
                notes.append(
                    f"{name} stage {s} block {b}: {type(mixer).__name__} has no known kernel size or "
                    "feature-map size; skipped"
                )
                continue
            cov = (
                (ks[1] / fs[1] + ks[0] / fs[0]) / 2 if reading == "axis" else math.sqrt(ks[0] * ks[1] / (fs[0] * fs[1]))
            )
            diam_v = (ks[0] + ks[1]) / 2 if reading == "axis" else math.sqrt(ks[0] * ks[1])
            rows.append(
                dict(base, coverage=float(cov), source="kernel size", diameter=float(diam_v), feature_size=fs[0])
            )
    if not rows:
        notes.append(f"{name} has no MetaFormer token mixers (no stages[i][j].token_mixer); nothing to measure")
    block_cols = ["model", "stage", "block", "mixer", "coverage", "depth", "source", "diameter", "feature_size"]
    ch_cols = ["model", "stage", "block", "mixer", "channel", "coverage", "diameter"]
    blocks, channels = pd.DataFrame(rows, columns=block_cols), pd.DataFrame(ch_rows, columns=ch_cols)
    if weights is not None:
        blocks, channels = blocks.assign(weights=weights), channels.assign(weights=weights)
    return CoverageResult(blocks, channels, notes, threshold, reading)
