"""Learned long-convolution kernels per stage (the paper's Fig. 4), as arrays.

For every stage with long-convolution mixers, one block is picked (``block``, default the
first block of the stage) and two maps are produced:

- ``mean``: the effective kernel (after the decay window and any truncation) averaged
  over all channels and divided by its largest absolute value (values in [-1, 1]); this
  is the paper's "normalized mean kernel weights";
- ``picked``: the normalized kernel of one hand-picked channel (``channel``), or, by
  default, of the channel with the most energy (largest sum of squared taps) in that
  block.

Orientation (H_px, 2D kernels). The mixers compute a true (flipped) convolution
``y[i, j] = sum_{p, q} u[p, q] * K[i - p + kh//2, j - q + kw//2]``. So the kernel value at
array index ``[a, b]`` multiplies the input pixel at
``(i - (a - kh//2), j - (b - kw//2))``: a tap at offset ``(da, db)`` right/below the
kernel centre weights the input pixel at ``(-da, -db)``, i.e. above/left of the output
pixel. The 2D maps are the kernel arrays themselves (row index down, column index
right), so they are point-mirrored with respect to the input pixels they weight.

H_b (1D kernels of ``Lf`` taps on the raster-flattened token sequence of the ``h x w``
feature map the kernel was trained for). Tap ``k[Lf//2 + (i - j)]`` links input token
``j`` to output token ``i``. For one evaluation position ``(r, c)`` (default the centre
``(h//2, w//2)``) the wrapped map holds, at ``[r', c']``, the weight of input pixel
``(r', c')`` for that output pixel: ``k[Lf//2 + (r*w + c) - (r'*w + c')]``. Unlike the
2D maps, wrapped maps are therefore in input-pixel orientation. Causal Hyena kernels
(``Lf = L`` taps, ``y[i] = sum_{j <= i} k[i - j] v[j]``) wrap with ``k[i - j]`` and zero
for ``j > i``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models import long_conv_mixers
from .plotting.labels import stage_label, weights_tag
from .settings import Hooks, RunContext, Settings

__all__ = [
    "KernelSettings",
    "kernels_job",
    "StageKernels",
    "KernelResult",
    "kernel_maps",
    "wrap_1d_kernel",
    "normalize_map",
    "top_energy_channel",
    "ORIENTATION_2D",
    "ORIENTATION_WRAPPED",
    "NoLongKernelsError",
]

ORIENTATION_2D = (
    "kernel array K[a,b]: output (i,j) takes input (i-(a-kh//2), j-(b-kw//2)); "
    "point-mirrored w.r.t. the inputs it weights"
)
ORIENTATION_WRAPPED = "map[r',c'] = weight of input pixel (r',c') for the marked output pixel"


class NoLongKernelsError(ValueError):
    """The model has no long-convolution mixers (nothing to show or truncate)."""


@dataclass
class StageKernels:
    """The kernels shown for one stage (all maps normalized to max |value| = 1)."""

    stage: int
    block: int
    mixer: str  # mixer class name
    kernel_ndim: int  # 2 (H_px) or 1 (H_b / causal Hyena)
    feature_size: tuple[int, int]
    mean: np.ndarray  # 2D: (kh, kw) kernel; 1D: (h, w) wrapped map
    picked: np.ndarray  # same layout as ``mean``, one channel
    channel: int  # the picked channel
    channel_auto: bool  # True when picked by top energy
    kernel1d_mean: np.ndarray | None = None  # 1D only: the normalized mean kernel (Lf,)
    at: tuple[int, int] | None = None  # 1D only: evaluation position (row, col)

    @property
    def orientation(self) -> str:
        return ORIENTATION_2D if self.kernel_ndim == 2 else ORIENTATION_WRAPPED


@dataclass
class KernelResult:
    """The kernels shown for one model (one :class:`StageKernels` per stage with long kernels)
    and the weights it carries. Files: ``kernels_<model>.npz`` (:meth:`save` / :meth:`load`)."""

    model: str
    stages: list[StageKernels] = field(default_factory=list)
    weights: str = ""

    def arrays(self) -> dict[str, np.ndarray]:
        """Every plotted array (plus the raw 1D means), keyed for ``np.savez``."""
        out: dict[str, np.ndarray] = {}
        for sk in self.stages:
            p = f"stage{sk.stage}"
            out[f"{p}_mean"] = sk.mean
            out[f"{p}_picked"] = sk.picked
            out[f"{p}_block"] = np.array(sk.block)
            out[f"{p}_channel"] = np.array(sk.channel)
            out[f"{p}_feature_size"] = np.array(sk.feature_size)
            if sk.kernel1d_mean is not None:
                out[f"{p}_kernel1d_mean"] = sk.kernel1d_mean
            if sk.at is not None:
                out[f"{p}_at"] = np.array(sk.at)
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per stage: block, mixer, channel shown, feature map, kernel shape, centre value."""
        rows = []
        for sk in self.stages:
            one_d = sk.kernel_ndim == 1
            centre = (
                float(sk.kernel1d_mean[len(sk.kernel1d_mean) // 2])
                if one_d
                else float(sk.mean[sk.mean.shape[0] // 2, sk.mean.shape[1] // 2])
            )
            rows.append(
                {
                    "model": self.model,
                    "weights": self.weights,
                    "stage": sk.stage,
                    "block": sk.block,
                    "mixer": sk.mixer,
                    "channel": sk.channel,
                    "channel_auto": sk.channel_auto,
                    "feature_size": "x".join(map(str, sk.feature_size)),
                    "kernel": f"{len(sk.kernel1d_mean)} taps (1D)" if one_d else "x".join(map(str, sk.mean.shape)),
                    "mean_centre": centre,
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "model",
                "weights",
                "stage",
                "block",
                "mixer",
                "channel",
                "channel_auto",
                "feature_size",
                "kernel",
                "mean_centre",
            ],
        )

    def save(self, out_dir: str | Path) -> Path:
        """Write ``kernels_<model>.npz``: the model, its weights, each stage's orientation
        convention, mixer and channel choice, and :meth:`arrays`. Returns the file."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, np.ndarray] = {}
        for sk in self.stages:
            extra[f"stage{sk.stage}_orientation"] = np.array(sk.orientation)
            extra[f"stage{sk.stage}_mixer"] = np.array(sk.mixer)
            extra[f"stage{sk.stage}_channel_auto"] = np.array(sk.channel_auto)
        path = out_dir / f"kernels_{self.model}.npz"
        np.savez(path, model=np.array(self.model), weights=np.array(self.weights), **extra, **self.arrays())
        return path

    @classmethod
    def load(cls, out_dir: str | Path, model: str) -> KernelResult:
        """Read back ``kernels_<model>.npz`` as written by :meth:`save`."""
        with np.load(Path(out_dir) / f"kernels_{model}.npz") as data:
            files = set(data.files)
            picked = [k for k in files if k.startswith("stage") and k.endswith("_picked")]
            stage_ids = sorted(int(k.split("_")[0][5:]) for k in picked)
            result = cls(model=str(data["model"]), weights=str(data["weights"]))
            for s in stage_ids:
                p = f"stage{s}"
                one_d = f"{p}_kernel1d_mean" in files
                result.stages.append(
                    StageKernels(
                        stage=s,
                        block=int(data[f"{p}_block"]),
                        mixer=str(data[f"{p}_mixer"]),
                        kernel_ndim=1 if one_d else 2,
                        feature_size=tuple(int(n) for n in data[f"{p}_feature_size"]),
                        mean=data[f"{p}_mean"],
                        picked=data[f"{p}_picked"],
                        channel=int(data[f"{p}_channel"]),
                        channel_auto=bool(data[f"{p}_channel_auto"]),
                        kernel1d_mean=data[f"{p}_kernel1d_mean"] if one_d else None,
                        at=tuple(int(n) for n in data[f"{p}_at"]) if f"{p}_at" in files else None,
                    )
                )
        return result


def normalize_map(a: np.ndarray) -> np.ndarray:
    """Divide by the largest absolute value (an all-zero map stays zero)."""
    a = np.asarray(a, dtype=np.float64)
    m = float(np.abs(a).max()) if a.size else 0.0
    return a / m if m > 0 else a.copy()


def top_energy_channel(kernel: torch.Tensor) -> int:
    """Index of the channel with the largest sum of squared taps (ties: lowest index)."""
    energy = kernel.double().flatten(1).pow(2).sum(1)
    return int(torch.argmax(energy))


def wrap_1d_kernel(
    kernel: torch.Tensor | np.ndarray,
    feature_size: Sequence[int],
    at: Sequence[int] | None = None,
    bidirectional: bool = True,
) -> np.ndarray:
    """Wrap 1D kernel(s) ``(..., Lf)`` onto the ``h x w`` grid for output pixel ``at``.

    Returns ``(..., h, w)`` where ``[r', c']`` is the weight of input pixel ``(r', c')``
    for output pixel ``at = (r, c)`` under raster flattening: bidirectional
    ``k[Lf//2 + (r*w + c) - (r'*w + c')]``; causal ``k[(r*w + c) - (r'*w + c')]`` (zero
    for inputs after the output). Taps that fall outside the kernel give zero.
    """
    k = np.asarray(kernel.detach().cpu() if isinstance(kernel, torch.Tensor) else kernel, dtype=np.float64)
    h, w = (int(n) for n in feature_size)
    r, c = (h // 2, w // 2) if at is None else (int(at[0]), int(at[1]))
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"evaluation position ({r}, {c}) is outside the {h}x{w} feature map")
    lf = k.shape[-1]
    out_tok = r * w + c
    in_tok = np.arange(h * w).reshape(h, w)
    idx = (lf // 2 if bidirectional else 0) + out_tok - in_tok
    valid = (idx >= 0) & (idx < lf)
    out = np.zeros(k.shape[:-1] + (h, w), dtype=np.float64)
    out[..., valid] = k[..., idx[valid]]
    return out


def _position(at: Sequence[int], feature_size: Sequence[int], stage: int | None = None) -> tuple[int, int]:
    """``(row, col)`` with negative values counted from the bottom/right edge; a position
    outside the ``h x w`` map raises ValueError with the valid range."""
    if len(at) != 2:
        raise ValueError(f"evaluation position needs row,col; got {tuple(at)}")
    h, w = (int(n) for n in feature_size)
    where = f"stage {stage}'s" if stage is not None else "the"
    for v, n, axis in zip(at, (h, w), ("row", "column")):
        if not -n <= int(v) < n:
            raise ValueError(
                f"position {tuple(int(a) for a in at)} is outside {where} {h} x {w} feature map: the {axis} must be "
                f"in {-n}..{n - 1} (negative counts from the bottom/right)"
            )
    return tuple(int(v) + n if int(v) < 0 else int(v) for v, n in zip(at, (h, w)))


def _per_stage(values: int | Sequence[int] | None, stage_ids: list[int], what: str) -> dict[int, int | None]:
    if values is None or isinstance(values, (int, np.integer)):
        return {s: values for s in stage_ids}
    values = list(values)
    if len(values) == 1:
        return {s: values[0] for s in stage_ids}
    if len(values) != len(stage_ids):
        raise ValueError(
            f"{what} takes one value or one per stage with long kernels "
            f"({len(stage_ids)}: stages {stage_ids}), got {len(values)}"
        )
    return dict(zip(stage_ids, values))


@dataclass(frozen=True)
class KernelSettings(Settings):
    """Which kernels are shown.

    Args:
        block: block index within each stage (negative counts from the end), one for all
            stages or one per stage with long kernels.
        channel: the hand-picked channel, same rules; None picks the top-energy channel.
        at: evaluation position ``(row, col)`` for wrapping 1D kernels (None: the centre of
            each stage's map; negative values count from the bottom/right).
    """

    block: int | tuple[int, ...] | None = 0
    channel: int | tuple[int, ...] | None = None
    at: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("block", "channel", "at"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, int):
                object.__setattr__(self, name, tuple(int(v) for v in value))


def kernel_maps(
    model: nn.Module,
    settings: KernelSettings | None = None,
    *,
    name: str = "",
    weights: str = "",
    **overrides,
) -> KernelResult:
    """Per-stage normalized kernels of ``model`` (see the module docstring).

    Args:
        model: a model with long-convolution token mixers.
        settings: block, channel and position (default :class:`KernelSettings`).
        name: the model's name in the result.
        weights: the weights ``model`` carries, recorded in the result.
        **overrides: settings fields replacing those of ``settings`` (e.g. ``channel=0``).

    Returns:
        KernelResult: one :class:`StageKernels` per stage with long kernels.

    Raises:
        NoLongKernelsError: the model has no long convolutions.
        ValueError: an out-of-range pick.
    """
    settings = KernelSettings.from_overrides(settings, **overrides)
    block, channel, at = settings.block, settings.channel, settings.at
    by_stage: dict[int, list[tuple[int, nn.Module]]] = {}
    for s, b, m in long_conv_mixers(model):
        by_stage.setdefault(s, []).append((b, m))
    if not by_stage:
        raise NoLongKernelsError(
            f"{name or type(model).__name__} has no long-convolution token mixers (no H_px / H_b kernels to show)"
        )
    stage_ids = sorted(by_stage)
    blocks = _per_stage(block, stage_ids, "block")
    channels = _per_stage(channel, stage_ids, "channel")
    result = KernelResult(model=name, weights=weights)
    for s in stage_ids:
        mixers = dict(by_stage[s])
        depth = max(mixers) + 1
        b = 0 if blocks[s] is None else int(blocks[s])
        b_idx = b + depth if b < 0 else b
        if b_idx not in mixers:
            raise ValueError(f"stage {s} has blocks 0..{depth - 1} with long kernels; block {b} does not exist")
        result.stages.append(_stage_kernels(s, b_idx, mixers[b_idx], channels[s], at))
    return result


def _stage_kernels(stage: int, block: int, mixer: nn.Module, channel: int | None, at) -> StageKernels:
    """One stage's normalized mean and picked kernels (1D kernels wrapped at ``at``)."""
    k = mixer.effective_kernel()
    n_ch = k.shape[0]
    auto = channel is None
    ch = top_energy_channel(k) if auto else int(channel)
    if not 0 <= ch < n_ch:
        raise ValueError(f"stage {stage} has {n_ch} channels; channel {ch} does not exist")
    fs = tuple(int(n) for n in mixer.feature_size)
    mean_k = k.double().mean(0)
    pick_k = k[ch].double()
    kind = type(mixer).__name__
    if mixer.kernel_ndim == 2:
        return StageKernels(
            stage, block, kind, 2, fs, normalize_map(mean_k.numpy()), normalize_map(pick_k.numpy()), ch, auto
        )
    bidir = bool(getattr(mixer, "bidirectional", True))
    pos = (fs[0] // 2, fs[1] // 2) if at is None else _position(at, fs, stage)
    return StageKernels(
        stage,
        block,
        kind,
        1,
        fs,
        normalize_map(wrap_1d_kernel(mean_k, fs, pos, bidir)),
        normalize_map(wrap_1d_kernel(pick_k, fs, pos, bidir)),
        ch,
        auto,
        kernel1d_mean=normalize_map(mean_k.numpy()),
        at=pos,
    )


def kernels_job(
    models: Iterable,
    settings: KernelSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> list[KernelResult]:
    """The kernel maps of several models, written as ``hpx-analyze kernels`` writes them.

    Models without long kernels are skipped (``hooks.log`` says so). Files in ``run.out_dir``
    (None: nothing written): ``kernels_<model>.npz`` and ``kernels_<model>.png`` per model.

    Args:
        models: specs or loaded models (:func:`~hpx_analysis.jobs.loaded_models`).
        settings: block, channel and position (default :class:`KernelSettings`).
        run: device, seed and output folder.
        hooks: ``log`` gets one line per model.

    Returns:
        list[KernelResult]: one per model with long kernels.
    """
    from .jobs import loaded_models

    settings, run, hooks = settings or KernelSettings(), run or RunContext(), hooks or Hooks()
    results = []
    for loaded in loaded_models(models, run):  # every model first: a bad pick fails before any file
        try:
            results.append(kernel_maps(loaded.model, settings, name=loaded.name, weights=loaded.weights))
        except NoLongKernelsError as err:
            hooks.log(f"{loaded.name}: {err}; skipped")
    for result in results:
        if run.out_dir is not None and run.is_main:
            from .plotting.files import save_kernel_figure

            result.save(run.out_dir)
            save_kernel_figure(result, run.out_dir)
        picks = ", ".join(
            f"{stage_label(sk.stage, short=True)}: block {sk.block} channel {sk.channel}"
            + (" (top energy)" if sk.channel_auto else "")
            for sk in result.stages
        )
        hooks.log(f"{result.model} ({weights_tag(result.weights)}): {picks}")
        if settings.at is not None and all(sk.kernel_ndim == 2 for sk in result.stages):
            hooks.log(
                f"note: {result.model} has 2D kernels (H_px) only; the position {tuple(settings.at)} "
                "applies to H_b's 1D kernels and was not used"
            )
    return results
