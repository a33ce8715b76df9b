"""Accuracy of probe models against the distance ``d`` on the fixed test split, with 95 %
Wilson intervals, per distance bin and as a measured reach.

The test split is ``TEST_REPS`` blocks of every distance x every class (96 images per distance
with four classes); at 128 px it is read block by block (:func:`iter_test_split`) rather than held
in memory whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ..models import long_conv_mixers
from .intervals import measured_reach, reach_level, wilson_interval
from .task import ProbeBatch, ProbeTask
from .train import accuracy

__all__ = [
    "EVAL_COLUMNS",
    "TEST_REPS",
    "SMALL_REPS",
    "accuracy_by_distance",
    "distance_bins",
    "bin_accuracy",
    "pooled_accuracy",
    "far_quarter_accuracy",
    "probe_batches",
    "iter_test_split",
    "fixed_test_split",
    "accuracy_truncated",
    "truncation_record",
    "probe_record",
]

EVAL_COLUMNS = ["model", "distance_px", "accuracy", "n", "ci_low", "ci_high", "weights"]
TEST_REPS = 24  # blocks of the fixed test split: 24 x 4 classes = 96 images per distance
SMALL_REPS = 1  # the tests' small subset: the first block (108 images at 64 px, 236 at 128 px)
RECORD_REL_SIZES = (0.125, 0.25, 0.5, 1.0)  # the truncations recorded for multi-stage probes


def iter_test_split(
    task: ProbeTask | None = None,
    reps: int = TEST_REPS,
    num_images: int | None = None,
    d_range: tuple[int, int] | None = None,
) -> Iterator[ProbeBatch]:
    """The fixed test split block by block (optionally only its first ``num_images``, or only
    the images whose distance lies in ``d_range``).

    Args:
        task: the probe task (default: the 64 px task).
        reps: blocks of every distance x class.
        num_images: stop after this many images.
        d_range: ``(lo, hi)``: keep the distances ``lo..hi`` (inclusive) of every block.

    Returns:
        An iterator of :class:`ProbeBatch` blocks, rendered as they are read.
    """
    task = task or ProbeTask()
    left = math.inf if num_images is None else num_images
    for r in range(reps):
        if left <= 0:
            return
        block = task.test_block(r)
        if d_range is not None:
            keep = (block.distances >= d_range[0]) & (block.distances <= d_range[1])
            block = ProbeBatch(block.images[keep], block.labels[keep], block.distances[keep], block.centres[keep])
        block = block.head(int(min(left, len(block))))
        left -= len(block)
        yield block


def fixed_test_split(task: ProbeTask | None = None, num_images: int | None = None, reps: int = TEST_REPS) -> ProbeBatch:
    """The fixed test split in one batch (optionally its first ``num_images``; only the blocks
    needed are rendered). At 128 px the whole split is about 1.1 GB: prefer :func:`iter_test_split`.

    Args:
        task: the probe task (default: the 64 px task).
        num_images: keep the first this many images.
        reps: blocks of every distance x class.

    Returns:
        The split as one :class:`ProbeBatch`.
    """
    return ProbeBatch.concat(list(iter_test_split(task, reps, num_images)))


def _as_blocks(batches: ProbeBatch | Iterable[ProbeBatch]) -> Iterable[ProbeBatch]:
    return [batches] if isinstance(batches, ProbeBatch) else batches


def probe_batches(batches: ProbeBatch | Iterable[ProbeBatch], batch_size: int, device: torch.device | str = "cpu"):
    """``(images, labels)`` pairs of at most ``batch_size`` on ``device`` (what the truncation
    sweep reads), from one batch or an iterable of blocks."""
    for block in _as_blocks(batches):
        for i in range(0, len(block), batch_size):
            yield block.images[i : i + batch_size].to(device), block.labels[i : i + batch_size].to(device)


def _table(name: str, weights: str, distances: np.ndarray, correct: np.ndarray, n: np.ndarray) -> pd.DataFrame:
    low, high = wilson_interval(correct, n)
    return pd.DataFrame(
        {
            "model": name,
            "distance_px": distances.astype(int),
            "accuracy": correct / n,
            "n": n.astype(int),
            "ci_low": low,
            "ci_high": high,
            "weights": weights,
        },
        columns=EVAL_COLUMNS,
    )


def accuracy_by_distance(
    model: torch.nn.Module, batches: ProbeBatch | Iterable[ProbeBatch], *, name: str = "", weights: str = ""
) -> pd.DataFrame:
    """Accuracy per distance with its 95 % Wilson interval.

    Args:
        model: the probe model (evaluated in eval mode; its mode is restored).
        batches: a :class:`ProbeBatch` or an iterable of them (e.g. :func:`iter_test_split`).
        name: the ``model`` column.
        weights: the ``weights`` column.

    Returns:
        One row per distance: ``model, distance_px, accuracy (fraction), n, ci_low, ci_high,
        weights``.
    """
    device = next(model.parameters()).device
    correct: dict[int, int] = {}
    count: dict[int, int] = {}
    for b in _as_blocks(batches):
        ok = accuracy(model, b.images.to(device), b.labels.to(device)).cpu().numpy()
        d = b.distances.numpy()
        for v in np.unique(d):
            correct[int(v)] = correct.get(int(v), 0) + int(ok[d == v].sum())
            count[int(v)] = count.get(int(v), 0) + int((d == v).sum())
    ds = np.array(sorted(count), dtype=int)
    return _table(name, weights, ds, np.array([correct[v] for v in ds], float), np.array([count[v] for v in ds], float))


def distance_bins(task: ProbeTask, n_bins: int = 4) -> list[tuple[int, int]]:
    """The ``d`` range cut into ``n_bins`` contiguous integer bins (the last is the far quarter)."""
    edges = np.linspace(task.d_min, task.d_max + 1, n_bins + 1)
    edges = np.ceil(edges).astype(int)
    return [(int(edges[i]), int(edges[i + 1] - 1)) for i in range(n_bins)]


def pooled_accuracy(table: pd.DataFrame, lo: int, hi: int) -> dict:
    """Accuracy pooled over the distances ``lo..hi`` of a per-distance table.

    Args:
        table: rows with ``distance_px``, ``accuracy`` and ``n`` (one model, one setting).
        lo, hi: the distance range, inclusive.

    Returns:
        ``{"accuracy", "correct", "n", "ci_low", "ci_high"}`` (Wilson 95 %).
    """
    sel = table[(table.distance_px >= lo) & (table.distance_px <= hi)]
    n = int(sel.n.sum())
    correct = int(np.round(sel.accuracy * sel.n).sum())
    low, high = wilson_interval(correct, n)
    acc = correct / n if n else math.nan
    return {"accuracy": acc, "correct": correct, "n": n, "ci_low": float(low), "ci_high": float(high)}


def bin_accuracy(table: pd.DataFrame, bins: Sequence[tuple[int, int]]) -> dict[str, float]:
    """``{"lo-hi": accuracy}`` weighted by the counts in each bin."""
    return {f"{lo}-{hi}": pooled_accuracy(table, lo, hi)["accuracy"] for lo, hi in bins}


def far_quarter_accuracy(table: pd.DataFrame, task: ProbeTask) -> dict:
    """:func:`pooled_accuracy` over the far quarter of distances (the last of
    :func:`distance_bins`)."""
    lo, hi = distance_bins(task)[-1]
    return {"distances": [lo, hi], **pooled_accuracy(table, lo, hi)}


def accuracy_truncated(
    model: torch.nn.Module,
    blocks: ProbeBatch | Callable[[], Iterable[ProbeBatch]],
    truncation: tuple[int, float] | None,
    shape: str = "square",
    **names: str,
) -> pd.DataFrame:
    """:func:`accuracy_by_distance` with one stage's long kernels truncated (restored
    afterwards, also on error).

    Args:
        model: the probe model.
        blocks: a :class:`ProbeBatch`, or a function returning the blocks to read (called once).
        truncation: ``(stage, rel_size)``, or None for the untruncated model.
        shape: ``square`` or ``disk``.
        **names: ``name`` and ``weights`` columns.

    Returns:
        The per-distance table.
    """
    mixers = [] if truncation is None else [m for s, _, m in long_conv_mixers(model) if s == truncation[0]]
    try:
        for m in mixers:
            m.set_truncation(float(truncation[1]), shape)
        return accuracy_by_distance(model, blocks if isinstance(blocks, ProbeBatch) else blocks(), **names)
    finally:
        for m in mixers:
            m.set_truncation(None)


def truncation_record(model: torch.nn.Module, task: ProbeTask, rel_sizes: Sequence[float] = RECORD_REL_SIZES) -> dict:
    """Far-quarter accuracy with each long-convolution stage truncated (square windows).

    Args:
        model: the probe model.
        task: its task.
        rel_sizes: the relative window sizes.

    Returns:
        ``{"rel_sizes", "stages": {stage: {rel_size: far-quarter dict}}, "small_far_correct":
        {stage: correct}}``: the far-quarter dicts (:func:`pooled_accuracy`) on the full test
        split, and the numbers correct in the far quarter of the first block at the smallest
        size, which the tests recompute.
    """
    far = distance_bins(task)[-1]
    full = ProbeBatch.concat(list(iter_test_split(task, d_range=far)))
    small = ProbeBatch.concat(list(iter_test_split(task, reps=SMALL_REPS, d_range=far)))
    stages = sorted({s for s, _, _ in long_conv_mixers(model)})
    out = {"rel_sizes": [float(r) for r in rel_sizes], "stages": {}, "small_far_images": len(small)}
    out["small_far_correct"] = {}
    for s in stages:
        rows = {str(float(r)): pooled_accuracy(accuracy_truncated(model, full, (s, r)), *far) for r in rel_sizes}
        out["stages"][str(s)] = rows
        small_table = accuracy_truncated(model, small, (s, min(rel_sizes)))
        out["small_far_correct"][str(s)] = pooled_accuracy(small_table, *far)["correct"]
    return out


def _small_correct(model: torch.nn.Module, task: ProbeTask) -> tuple[int, int]:
    small = fixed_test_split(task, reps=SMALL_REPS)
    device = next(model.parameters()).device
    return len(small), int(accuracy(model, small.images.to(device), small.labels.to(device)).sum().item())


def probe_record(model: torch.nn.Module, task: ProbeTask | None = None) -> dict:
    """The accuracies written beside a bundled checkpoint.

    Args:
        model: the trained probe.
        task: its task (default: the 64 px task).

    Returns:
        Overall, per distance bin, per distance and far-quarter accuracy (with Wilson
        interval) on the full fixed test split, the measured reach and the number correct on
        its first block (``SMALL_REPS``), which the tests recompute; for multi-stage models
        also :func:`truncation_record`.
    """
    task = task or ProbeTask()
    full = accuracy_by_distance(model, iter_test_split(task))
    n_small, small_correct = _small_correct(model, task)
    return {
        "test_images": int(full.n.sum()),
        "test_images_per_distance": int(full.n.min()),
        "test_accuracy": float((full.accuracy * full.n).sum() / full.n.sum()),
        "bin_accuracy": bin_accuracy(full, distance_bins(task)),
        "far_quarter": far_quarter_accuracy(full, task),
        "measured_reach": measured_reach(full, reach_level(task.num_classes)),
        "distance_accuracy": {int(r.distance_px): float(r.accuracy) for r in full.itertuples()},
        "small_test_images": n_small,
        "small_test_correct": small_correct,
        **({"truncation": truncation_record(model, task)} if len(getattr(model, "stages", ())) > 1 else {}),
    }
