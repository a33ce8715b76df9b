"""Truncating the long kernels of one stage at a time (the paper's Fig. 7), as a table.

For each stage ``s`` and relative size ``r``, every long-convolution mixer of stage ``s``
keeps only the taps inside a centred window whose side is ``r`` times the feature-map
size the kernel was built for (``set_truncation(r, shape)``; square by default, disk as
an option; H_b kernels on their 1D token axis, ``r`` times ``L = h * w``); all other
stages stay untouched. The model is evaluated on the given batches and compared with
the untruncated model:

- ``agreement``: % of images whose top-1 class equals the untruncated model's;
- ``kl``: mean KL divergence ``KL(p_untruncated || p_truncated)`` in nats;
- ``top1``, ``top5``: % accuracy, only when the batches carry labels (IN-1k indices).

Work saved against recomputing the network per setting (same table up to float rounding):

- Whole kernels: a setting whose window keeps every tap of its stage's kernels
  (:func:`whole_kernel_settings`) gives the untruncated logits bit for bit, so it runs no
  forward; its row is the untruncated model's.
- Stage prefixes: truncating stage ``s`` changes nothing before its blocks, so each batch's
  features entering every swept stage's blocks (after its down-sampling) are computed once,
  in the same pass that gives the untruncated logits.
- Shared suffix batches: the untruncated stages after ``s`` run once per batch for all
  sizes of stage ``s`` together (their stage outputs stacked into one batch).
- Batches are grouped into chunks (``chunk_images``) whose features are kept while every
  setting runs over the chunk, so that a setting's truncated kernel and its spectrum are
  built once per chunk, not once per batch.

Sharding: under ``torchrun`` every process evaluates its own share of the batches and the
per-setting counts and sums are summed over processes (see :mod:`.sharding`); every
process returns the same table.

The table (``model, stage, rel_size, metric, value``) also holds the untruncated model's
values in rows with ``stage == -1`` and an empty ``rel_size``.
The caller's model is left as found: truncations and train/eval mode are restored even
when the sweep fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .execution.distributed import all_reduce_sum
from .kernels import NoLongKernelsError
from .models import long_conv_mixers
from .models.fast import fast_path_record, fast_paths
from .plotting.labels import short_weights
from .settings import Hooks, RunContext, Settings

__all__ = [
    "TruncationComparison",
    "truncation_for_model",
    "TruncationSettings",
    "truncation_job",
    "TABLE_FILE",
    "RECORD_FILE",
    "DEFAULT_REL_SIZES",
    "TruncationResult",
    "truncation_sweep",
    "full_rel_sizes",
    "swept_stages",
    "restore_truncations",
    "stage_prefixes",
    "whole_kernel_settings",
    "BASELINE_STAGE",
]

DEFAULT_REL_SIZES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)
BASELINE_STAGE = -1
TABLE_FILE, RECORD_FILE, PROBE_TABLE_FILE = "truncation.csv", "truncation.json", "truncation_probe.csv"
# accumulator columns: images, top-1 agreement, KL sum, labelled images, top-1 hits, top-5 hits
_N, _AGREE, _KL, _NLAB, _TOP1, _TOP5 = range(6)
SHAPES = ("square", "disk")


@dataclass(frozen=True)
class TruncationSettings(Settings):
    """What a truncation sweep computes.

    Args:
        rel_sizes: relative window sizes (window side / feature-map size), each > 0.
        shape: ``"square"`` (per-axis window) or ``"disk"``.
        stages: 0-based stages to sweep (None: every stage with long kernels).
        batch_size: images per forward pass.
        crop_pct: the evaluation centre-crop fraction (None: the model's own).
        size: input side in px (None: the model's evaluation size).
        num_images: the first N images of the folder (None: all).
        labelled: read IN-1k labels from the folders (None: when every image has one).
    """

    rel_sizes: tuple[float, ...] = DEFAULT_REL_SIZES
    shape: str = "square"
    stages: tuple[int, ...] | None = None
    batch_size: int = 16
    crop_pct: float | None = None
    size: int | None = None
    num_images: int | None = None
    labelled: bool | None = None

    def __post_init__(self) -> None:
        rel_sizes = tuple(float(r) for r in self.rel_sizes)
        if not rel_sizes or any(not r > 0 for r in rel_sizes):
            raise ValueError(f"relative sizes must be positive numbers, got {list(rel_sizes)}")
        if self.shape not in SHAPES:
            raise ValueError(f"truncation shape must be 'square' or 'disk', got {self.shape!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        object.__setattr__(self, "rel_sizes", rel_sizes)
        if self.stages is not None:
            object.__setattr__(self, "stages", tuple(int(s) for s in self.stages))

    def record(self, run: RunContext, images: str, num_images: int, no_labels_reason: str | None) -> dict:
        """The settings block of ``truncation.json``: these settings with what the run used.

        Args:
            run: the seed and number of processes.
            images: how the images are named.
            num_images: the number of images used.
            no_labels_reason: why there is no accuracy (None: labelled).

        Returns:
            dict: the settings, ``labels`` for ``labelled``, plus seed, world size, images.
        """
        described: dict[str, Any] = self.describe()
        described.pop("labelled")
        return {
            **described,
            "seed": run.seed,
            "world_size": run.dist.world_size,
            "images": images,
            "num_images": num_images,
            "labels": no_labels_reason is None,
            "no_labels_reason": no_labels_reason,
        }


@dataclass
class TruncationResult:
    """One model's sweep: ``table`` (model, stage, rel_size, metric, value; ``stage = -1`` is
    the untruncated model), image counts, the relative size that keeps each stage's whole
    kernel, notes, and the model's record (``weights``, ``weights_kind``) plus ``run`` (images
    skipped, seconds) as written into ``truncation.json``."""

    table: pd.DataFrame
    n_images: int
    n_labelled: int
    full_rel_size: dict[int, float] = field(default_factory=dict)  # per stage: K / n (whole kernel)
    notes: list[str] = field(default_factory=list)
    model: str = ""
    weights: str = ""
    weights_kind: str = ""
    run: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The table with the weights as a last column.

        Returns:
            DataFrame: ``truncation.csv``'s rows of this model.
        """
        return self.table.assign(weights=self.weights)

    def record(self) -> dict:
        """This model's entry in ``truncation.json``.

        Returns:
            dict: model, weights, images evaluated/labelled/skipped, whole-kernel sizes, notes, seconds.
        """
        return {
            "model": self.model,
            "weights": self.weights,
            "weights_kind": self.weights_kind,
            "images_evaluated": self.n_images,
            "images_labelled": self.n_labelled,
            "images_skipped_by_this_process": self.run.get("images_skipped_by_this_process", []),
            "full_kernel_rel_size": {str(k): v for k, v in self.full_rel_size.items()},
            "notes": list(self.notes),
            "seconds": self.run.get("seconds"),
        }

    @classmethod
    def from_record(cls, record: dict, table: pd.DataFrame) -> TruncationResult:
        """The result :meth:`record` and :meth:`to_frame` wrote.

        Args:
            record: the model's entry in ``truncation.json``.
            table: its rows of ``truncation.csv`` without the weights column.

        Returns:
            TruncationResult: the result as it was saved.
        """
        run = {"images_skipped_by_this_process": record["images_skipped_by_this_process"], "seconds": record["seconds"]}
        return cls(
            table.reset_index(drop=True),
            record["images_evaluated"],
            record["images_labelled"],
            {int(k): v for k, v in record["full_kernel_rel_size"].items()},
            list(record["notes"]),
            record["model"],
            record["weights"],
            record["weights_kind"],
            run,
        )


@dataclass
class TruncationComparison:
    """Sweeps of several models with the settings they share. Files: ``truncation.csv``
    (every model's table, with a ``weights`` column) and ``truncation.json`` (settings and
    one record per model), and on the probe split ``truncation_probe.csv`` (``by_distance``:
    accuracy per stage, relative size and distance)."""

    results: list[TruncationResult] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    by_distance: pd.DataFrame | None = None

    def to_frame(self) -> pd.DataFrame:
        """Every model's table, with a ``weights`` column.

        Returns:
            DataFrame: the rows of ``truncation.csv``.
        """
        return pd.concat([r.to_frame() for r in self.results], ignore_index=True)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``truncation.csv``, ``truncation.json`` (settings, models, fast paths) and,
        with a per-distance table, ``truncation_probe.csv``.

        Args:
            out_dir: the folder (created when missing).

        Returns:
            Path: the folder.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        short_weights(self.to_frame()).to_csv(out_dir / TABLE_FILE, index=False)
        record = {
            "settings": self.settings,
            "models": [r.record() for r in self.results],
            "fast_paths": fast_path_record(),
        }
        (out_dir / RECORD_FILE).write_text(json.dumps(record, indent=1))
        if self.by_distance is not None:
            short_weights(self.by_distance).to_csv(out_dir / PROBE_TABLE_FILE, index=False)
        return out_dir

    @classmethod
    def load(cls, out_dir: str | Path) -> TruncationComparison:
        """The comparison :meth:`save` wrote.

        Args:
            out_dir: the folder.

        Returns:
            TruncationComparison: the results, settings and per-distance table (if any).
        """
        out_dir = Path(out_dir)
        table = pd.read_csv(out_dir / TABLE_FILE)
        record = json.loads((out_dir / RECORD_FILE).read_text())
        results = [
            TruncationResult.from_record(r, table[table["model"] == r["model"]].drop(columns="weights"))
            for r in record["models"]
        ]
        by_distance = out_dir / PROBE_TABLE_FILE
        return cls(results, record["settings"], pd.read_csv(by_distance) if by_distance.is_file() else None)


def _check_model(model: nn.Module, name: str) -> dict[int, list[nn.Module]]:
    if not (hasattr(model, "forward_to_stage") and hasattr(model, "forward_from_stage")):
        raise NoLongKernelsError(
            f"{name or type(model).__name__} is not a HyenaPixel-family model: it has no long-convolution "
            "kernels to truncate"
        )
    by_stage: dict[int, list[nn.Module]] = {}
    for s, _, m in long_conv_mixers(model):
        by_stage.setdefault(s, []).append(m)
    if not by_stage:
        raise NoLongKernelsError(f"{name or type(model).__name__} has no long-convolution token mixers to truncate")
    return by_stage


def swept_stages(model: nn.Module, stages: Sequence[int] | None = None, name: str = "") -> list[int]:
    """The stages to sweep.

    Args:
        model: a HyenaPixel-family model.
        stages: the stages asked for (None: every stage with long kernels).
        name: the model's name in messages.

    Returns:
        list[int]: the stages, sorted, each with long kernels.

    Raises:
        NoLongKernelsError: the model has no long kernels.
        ValueError: a stage without long kernels.
    """
    by_stage = _check_model(model, name)
    if stages is None:
        return sorted(by_stage)
    out = []
    for s in stages:
        if int(s) not in by_stage:
            raise ValueError(
                f"stage {s} of {name or type(model).__name__} has no long-convolution kernels "
                f"(stages with long kernels: {sorted(by_stage)})"
            )
        out.append(int(s))
    return sorted(set(out))


def full_rel_sizes(model: nn.Module) -> dict[int, float]:
    """Per stage the relative size that keeps the whole kernel.

    Args:
        model: a model with long-convolution mixers.

    Returns:
        dict[int, float]: stage -> ``K / n`` (1D: ``Lf / L``), the largest over its mixers.
    """
    out = {}
    for s, _, m in long_conv_mixers(model):
        k = m.effective_kernel().shape[1:]
        n = m.feature_size if m.kernel_ndim == 2 else (m.feature_size[0] * m.feature_size[1],)
        out[s] = max(out.get(s, 0.0), max(kk / nn_ for kk, nn_ in zip(k, n)))
    return out


class restore_truncations:
    """Context manager: clear every long mixer's truncation on entry (so that the sweep's
    reference is the untruncated model) and put back what was there, and the model's
    train/eval mode, on exit, also on error."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.mixers = [m for _, _, m in long_conv_mixers(model)]

    def __enter__(self):
        self.saved = [m.truncation for m in self.mixers]
        self.training = self.model.training
        for m in self.mixers:
            m.set_truncation(None)
        self.model.eval()
        return self

    def __exit__(self, *exc):
        for m, t in zip(self.mixers, self.saved):
            if t is None:
                m.set_truncation(None)
            else:
                m.set_truncation(t.rel_size, t.shape)
        self.model.train(self.training)
        return False


def stage_prefixes(model: nn.Module, x: torch.Tensor, stages: Sequence[int]) -> dict[int, torch.Tensor]:
    """Channels-last features entering each of ``stages`` (before its down-sampling), in one pass.

    Args:
        model: a HyenaPixel-family model.
        x: input images ``(B, 3, H, W)``.
        stages: the stages.

    Returns:
        dict[int, Tensor]: stage -> ``model.forward_to_stage(x, stage)``.
    """
    out = {}
    h = x
    last = max(stages)
    for i in range(last + 1):
        if i in stages:
            out[i] = h
        if i < last:
            h = model.stages[i](model.downsample_layers[i](h))
    return out


def _accumulate(
    acc: torch.Tensor,
    row: int,
    logits: torch.Tensor,
    ref_logp: torch.Tensor,
    ref_top1: torch.Tensor,
    labels: torch.Tensor | None,
) -> None:
    logp = F.log_softmax(logits.double(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    acc[row, _N] += logits.shape[0]
    acc[row, _AGREE] += (logits.argmax(-1) == ref_top1).sum().item()
    acc[row, _KL] += kl.sum().item()
    if labels is not None:
        top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        acc[row, _NLAB] += labels.numel()
        acc[row, _TOP1] += (top5[:, 0] == labels).sum().item()
        acc[row, _TOP5] += (top5 == labels[:, None]).any(-1).sum().item()


def _keeps_whole_kernel(mixer: nn.Module, rel_size: float, shape: str) -> bool:
    """Whether a window of ``rel_size`` keeps every tap of ``mixer``'s kernel (its output is then
    the untruncated one, bit for bit)."""
    saved = mixer.truncation
    mixer.set_truncation(rel_size, shape)
    try:
        mask = mixer._long_filter().truncation_mask()
    finally:
        mixer.set_truncation(None if saved is None else saved.rel_size, "square" if saved is None else saved.shape)
    return mask is None or bool(mask.all())


def whole_kernel_settings(model: nn.Module, pairs: Sequence[tuple[int, float]], shape: str = "square") -> set:
    """The settings whose window keeps the whole kernel of every long mixer of their stage.

    Args:
        model: a HyenaPixel-family model.
        pairs: ``(stage, rel_size)`` settings.
        shape: the window's shape.

    Returns:
        set[tuple[int, float]]: those of ``pairs`` that change nothing (no forward needed:
        their logits are the untruncated model's).
    """
    by_stage = _check_model(model, "")
    return {(s, r) for s, r in pairs if all(_keeps_whole_kernel(m, r, shape) for m in by_stage[s])}


def _stage_inputs(model: nn.Module, x: torch.Tensor, stages: Sequence[int]) -> tuple[dict, torch.Tensor]:
    """Features entering the blocks of each of ``stages`` (after its down-sampling), and the
    untruncated logits, in one pass."""
    out, h = {}, x
    for i in range(model.num_stages):
        h = model.downsample_layers[i](h)
        if i in stages:
            out[i] = h
        h = model.stages[i](h)
    return out, model.forward_head(h.permute(0, 3, 1, 2))


def _suffix(model: nn.Module, h: torch.Tensor, stage: int) -> torch.Tensor:
    """Logits from the output of stage ``stage``'s blocks (the untruncated rest of the network)."""
    for i in range(stage + 1, model.num_stages):
        h = model.stages[i](model.downsample_layers[i](h))
    return model.forward_head(h.permute(0, 3, 1, 2))


@dataclass
class _Batch:
    """One batch of a chunk: the features entering each swept stage's blocks, the untruncated
    log-probabilities and top-1 classes, the labels and the number of images."""

    inputs: dict[int, torch.Tensor]
    ref_logp: torch.Tensor
    ref_top1: torch.Tensor
    labels: torch.Tensor | None
    n: int


def _run_stage(model: nn.Module, chunk: list[_Batch], stage: int, rows: list, mixers: list, shape: str, acc) -> None:
    """Every truncated size (``rows``: ``(accumulator row, rel_size)``) of one stage over a chunk.

    Each size's truncated kernel (and its cached spectrum) is set once and runs the stage's
    blocks over every batch of the chunk; the untruncated rest of the network then runs once
    per batch for all sizes together (their outputs stacked into one batch)."""
    outputs = []
    for _, r in rows:
        try:
            for m in mixers:
                m.set_truncation(r, shape)
            outputs.append([model.stages[stage](b.inputs[stage]) for b in chunk])
        finally:
            for m in mixers:
                m.set_truncation(None)
    for i, b in enumerate(chunk):
        logits = _suffix(model, torch.cat([out[i] for out in outputs]), stage)
        for (row, _), part in zip(rows, logits.split(b.n)):
            _accumulate(acc, row, part, b.ref_logp, b.ref_top1, b.labels)


def truncation_sweep(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    settings: TruncationSettings | None = None,
    hooks: Hooks | None = None,
    *,
    name: str = "",
    reduce: Callable[[torch.Tensor], torch.Tensor] = all_reduce_sum,
    chunk_images: int = 64,
    **overrides,
) -> TruncationResult:
    """Sweep ``settings.rel_sizes`` for each of ``settings.stages`` (default: all stages with
    long kernels).

    The module docstring says which work it saves against recomputing the network per setting.

    Args:
        model: a HyenaPixel-family model (left as found).
        batches: yields ``(images, labels)``: images already transformed ``(B, 3, H, W)`` on
            the model's device, labels an int tensor of IN-1k indices or ``None``. Under
            ``torchrun`` this process's share.
        settings: the sweep's settings (default :class:`TruncationSettings`); only
            ``rel_sizes``, ``stages`` and ``shape`` are used here.
        hooks: ``hooks.progress(n)`` is called for each finished batch with its size.
        name: the model's name in the table.
        reduce: sums the accumulators over processes.
        chunk_images: the features entering the swept stages are kept for about this many
            images at a time, so that each setting's truncated kernel and its FFT spectrum are
            computed once per chunk rather than once per batch (memory: roughly 2 MB per
            224 px image for an S18 model, plus each stage's output per truncated size).
        **overrides: settings fields replacing those of ``settings``.

    Returns:
        TruncationResult: the table, image counts, whole-kernel sizes and notes.
    """
    settings = TruncationSettings.from_overrides(settings, **overrides)
    hooks = hooks or Hooks()
    stage_ids = swept_stages(model, settings.stages, name)
    by_stage = _check_model(model, name)
    if chunk_images < 1:
        raise ValueError(f"chunk_images must be at least 1, got {chunk_images}")
    pairs = [(s, r) for s in stage_ids for r in settings.rel_sizes]
    acc = torch.zeros(len(pairs) + 1, 6, dtype=torch.float64)

    with restore_truncations(model), fast_paths(model), torch.no_grad():
        unchanged = whole_kernel_settings(model, pairs, settings.shape)
        todo = {
            s: [(row, r) for row, (t, r) in enumerate(pairs, 1) if t == s and (t, r) not in unchanged]
            for s in stage_ids
        }

        def run_chunk(chunk):
            for s in stage_ids:
                if todo[s]:
                    _run_stage(model, chunk, s, todo[s], by_stage[s], settings.shape, acc)
            for b in chunk:
                hooks.progress(b.n)

        chunk, in_chunk = [], 0
        for x, labels in batches:
            if labels is not None:
                labels = labels.to(x.device)
            inputs, ref = _stage_inputs(model, x, stage_ids)
            ref_logp = F.log_softmax(ref.double(), dim=-1)
            _accumulate(acc, 0, ref, ref_logp, ref.argmax(-1), labels)
            chunk.append(_Batch(inputs, ref_logp, ref.argmax(-1), labels, x.shape[0]))
            in_chunk += x.shape[0]
            if in_chunk >= chunk_images:
                run_chunk(chunk)
                chunk, in_chunk = [], 0
        if chunk:
            run_chunk(chunk)
    for row, pair in enumerate(pairs, 1):
        if pair in unchanged:  # the untruncated logits: what the baseline row accumulated
            acc[row] = acc[0]
    full = {s: v for s, v in full_rel_sizes(model).items() if s in stage_ids}
    return _result(reduce(acc), pairs, name, full)


def _result(acc: torch.Tensor, pairs: list[tuple[int, float]], name: str, full: dict) -> TruncationResult:
    """The sweep's table from its (reduced) accumulators: one row per setting and metric."""
    n_images, n_lab = int(acc[0, _N]), int(acc[0, _NLAB])
    if n_images == 0:
        raise ValueError("no images were evaluated")
    notes: list[str] = []
    if n_lab == 0:
        notes.append("no labels: top-1/top-5 accuracy not computed (only agreement and KL)")
    elif n_lab < n_images:
        notes.append(f"accuracy over the {n_lab} labelled of {n_images} images")
    rows = []
    for row, (s, r) in enumerate([(BASELINE_STAGE, float("nan"))] + pairs):
        a = acc[row]
        vals = {"agreement": 100.0 * a[_AGREE].item() / a[_N].item(), "kl": a[_KL].item() / a[_N].item()}
        if n_lab:
            vals["top1"] = 100.0 * a[_TOP1].item() / a[_NLAB].item()
            vals["top5"] = 100.0 * a[_TOP5].item() / a[_NLAB].item()
        for metric, value in vals.items():
            rows.append(dict(model=name, stage=s, rel_size=r, metric=metric, value=value))
    table = pd.DataFrame(rows, columns=["model", "stage", "rel_size", "metric", "value"])
    return TruncationResult(table, n_images, n_lab, full, notes)


def truncation_for_model(
    loaded,
    items: Sequence,
    settings: TruncationSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    **overrides,
) -> TruncationResult:
    """:func:`truncation_sweep` of a loaded model over image files at its evaluation transform.

    Args:
        loaded: a :class:`~hpx_analysis.io.weights.LoadedModel`.
        items: image items (:func:`~hpx_analysis.io.images.list_images`; this process's
            share under ``torchrun``).
        settings: the sweep's settings; ``labelled`` None reads labels when the items have them.
        run: the device the images go to (default: CPU).
        hooks: ``hooks.progress(n)`` after each batch of ``n`` images.
        **overrides: settings fields replacing those of ``settings`` (e.g. ``rel_sizes=(0.5, 1.0)``).

    Returns:
        TruncationResult: with the model's record, the images skipped and the seconds taken.

    Raises:
        TypeError: ``loaded`` is not a LoadedModel (a bare module, for instance).
        NoLongKernelsError: the model has no long kernels (before any image is read).
    """
    from .io.batches import ImageBatches
    from .io.images import labels_available, model_eval_transform
    from .io.weights import LoadedModel

    if not isinstance(loaded, LoadedModel):
        hint = (
            "; for a bare nn.Module call truncation_sweep(module, batches, name=...) with batches of tensors"
            if isinstance(loaded, nn.Module)
            else ""
        )
        raise TypeError(
            "truncation_for_model expects a LoadedModel (hpx_analysis.load_model('hpx_former_s18') gives one), "
            f"got {type(loaded).__name__}{hint}"
        )
    settings = TruncationSettings.from_overrides(settings, **overrides)
    run = run or RunContext()
    swept_stages(loaded.model, settings.stages, loaded.name)
    items = list(items)
    labelled = labels_available(items)[0] if settings.labelled is None else settings.labelled
    batches = ImageBatches(
        items,
        model_eval_transform(loaded.model, settings.crop_pct, settings.size),
        settings.batch_size,
        with_labels=labelled,
        device=torch.device(run.device),
    )
    start = time.perf_counter()
    result = truncation_sweep(loaded.model, batches, settings, hooks, name=loaded.name)
    skipped = [list(s) for s in batches.skipped]
    return _with_record(result, loaded, skipped, time.perf_counter() - start)


def _with_record(result: TruncationResult, loaded, skipped: list, seconds: float) -> TruncationResult:
    result.model, result.weights, result.weights_kind = loaded.name, loaded.weights, loaded.weights_kind
    result.run = {"images_skipped_by_this_process": skipped, "seconds": round(seconds, 3)}
    return result


def truncation_job(
    models: Iterable,
    images: str | Path | None,
    settings: TruncationSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> TruncationComparison:
    """The truncation sweep of several models, written as ``hpx-analyze truncation`` writes it.

    Models without long kernels are skipped (``hooks.log`` says so). Under ``torchrun`` each
    process sweeps its share of the images and only rank 0 writes. Files in ``run.out_dir``
    (None: nothing written): ``truncation.csv``, ``truncation.json``, ``truncation.png`` and,
    on the probe split, ``truncation_probe.csv``.

    Args:
        models: specs or loaded models (:func:`~hpx_analysis.jobs.loaded_models`).
        images: an image folder, None for the bundled photographs, or ``"probe"`` for the
            probe test split (one process).
        settings: the sweep's settings (default :class:`TruncationSettings`).
        run: device, processes, output folder and seed.
        hooks: ``task`` per model, ``on_start(0, images)``, ``progress`` per batch, ``log``.

    Returns:
        TruncationComparison: every swept model's result and the settings record
        (``by_distance`` holds the probe split's per-distance table, else None).

    Raises:
        NoLongKernelsError: none of the models has long kernels.
    """
    from .jobs import images_label, loaded_models
    from .probe.analysis import PROBE_IMAGES_LABEL, is_probe_source

    settings, run, hooks = settings or TruncationSettings(), run or RunContext(), hooks or Hooks()
    if is_probe_source(images):
        sweep, label, why, total = _probe_sweep(settings, run, hooks), PROBE_IMAGES_LABEL, None, None
    else:
        sweep, why, total = _folder_sweep(images, settings, run, hooks)
        label = images_label(images)
    results, by_distance = [], []
    for loaded in loaded_models(models, run):
        try:
            result, table = sweep(loaded)
        except NoLongKernelsError as err:
            hooks.log(f"{loaded.name}: {err}; skipped")
            continue
        results.append(result)
        if table is not None:
            by_distance.append(table)
        if run.is_main:
            _log_result(result, hooks)
    if not results:
        raise NoLongKernelsError(
            "none of the models has long-convolution kernels to truncate (only the HyenaPixel family has them); "
            "nothing written"
        )
    n = results[-1].n_images if total is None else total
    table = pd.concat(by_distance, ignore_index=True) if by_distance else None
    comparison = TruncationComparison(results, settings.record(run, label, n, why), table)
    if run.out_dir is not None and run.is_main:
        from .plotting.files import save_truncation_figure

        comparison.save(run.out_dir)
        save_truncation_figure(comparison, run.out_dir)
    return comparison


def _folder_sweep(images, settings: TruncationSettings, run: RunContext, hooks: Hooks):
    """``(sweep(loaded) -> (result, None), no_labels_reason, number of images)`` over a folder."""
    from .io.images import labels_available, list_images

    items = list_images(images, settings.num_images)
    if run.is_main:
        for path, reason in items.skipped:
            hooks.log(f"skipped {path}: {reason}")
    labelled, why = labels_available(items)
    if settings.labelled is not None:
        labelled, why = settings.labelled, (None if settings.labelled else "labels not read")
    if run.is_main and not labelled:
        hooks.log(
            f"note: no accuracy: {why}; reporting top-1 agreement and KL divergence from the untruncated model only"
        )
    mine = run.dist.take(items)
    settings = settings.replace(labelled=labelled)
    shared = Hooks(progress=lambda n: hooks.progress(n * run.dist.world_size))

    def sweep(loaded):
        swept_stages(loaded.model, settings.stages, loaded.name)
        hooks.task(f"truncation {loaded.name}")
        hooks.on_start(0, len(items))
        return truncation_for_model(loaded, mine, settings, run, shared if run.is_main else None), None

    return sweep, (why or None) if not labelled else None, len(items)


def _probe_sweep(settings: TruncationSettings, run: RunContext, hooks: Hooks):
    """``sweep(loaded) -> (result, per-distance table)`` on the probe test split."""
    from .probe.analysis import probe_truncation

    if run.dist.world_size > 1:
        raise ValueError("--images probe runs in one process (the test split is small)")

    def sweep(loaded):
        return probe_truncation(
            loaded,
            rel_sizes=settings.rel_sizes,
            stages=settings.stages,
            shape=settings.shape,
            batch_size=settings.batch_size,
            device=run.device,
            num_images=settings.num_images,
        )

    return sweep


def _log_result(result: TruncationResult, hooks: Hooks) -> None:
    for path, reason in result.run["images_skipped_by_this_process"]:
        hooks.log(f"skipped {path}: {reason}")
    base = result.table[result.table.stage == BASELINE_STAGE].set_index("metric").value.round(3).to_dict()
    hooks.log(
        f"{result.model} ({result.weights}): {result.n_images} images, untruncated {base}, "
        f"{result.run['seconds']:.1f} s"
    )
