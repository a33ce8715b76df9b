"""Accuracy of probe models against the distance ``d`` on the fixed test split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .task import ProbeBatch, ProbeTask
from .train import accuracy

__all__ = ["EVAL_COLUMNS", "accuracy_by_distance", "distance_bins", "bin_accuracy", "probe_batches", "fixed_test_split"]

EVAL_COLUMNS = ["model", "distance_px", "accuracy", "n", "weights"]
TEST_REPS = 4  # the fixed test split: every distance x class, 4 positions each (432 images at 64 px)


def fixed_test_split(task: ProbeTask | None = None, num_images: int | None = None, reps: int = TEST_REPS) -> ProbeBatch:
    """The fixed test split (optionally its first ``num_images``)."""
    batch = (task or ProbeTask()).test_set(reps)
    if num_images is not None:
        n = min(num_images, len(batch))
        batch = ProbeBatch(batch.images[:n], batch.labels[:n], batch.distances[:n], batch.centres[:n])
    return batch


def probe_batches(batch: ProbeBatch, batch_size: int, device: torch.device | str = "cpu"):
    """``(images, labels)`` pairs of ``batch_size`` on ``device`` (what the truncation sweep reads)."""
    for i in range(0, len(batch), batch_size):
        yield batch.images[i : i + batch_size].to(device), batch.labels[i : i + batch_size].to(device)


def accuracy_by_distance(
    model: torch.nn.Module, batch: ProbeBatch, *, name: str = "", weights: str = ""
) -> pd.DataFrame:
    """One row per distance: ``model, distance_px, accuracy (fraction), n, weights``."""
    device = next(model.parameters()).device
    correct = accuracy(model, batch.images.to(device), batch.labels.to(device)).cpu().numpy()
    d = batch.distances.numpy()
    rows = [
        dict(
            model=name,
            distance_px=int(v),
            accuracy=float(correct[d == v].mean()),
            n=int((d == v).sum()),
            weights=weights,
        )
        for v in np.unique(d)
    ]
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)


def distance_bins(task: ProbeTask, n_bins: int = 4) -> list[tuple[int, int]]:
    """The ``d`` range cut into ``n_bins`` contiguous integer bins (the last is the far quarter)."""
    edges = np.linspace(task.d_min, task.d_max + 1, n_bins + 1)
    edges = np.ceil(edges).astype(int)
    return [(int(edges[i]), int(edges[i + 1] - 1)) for i in range(n_bins)]


def bin_accuracy(table: pd.DataFrame, bins: Sequence[tuple[int, int]]) -> dict[str, float]:
    """``{"lo-hi": accuracy}`` weighted by the counts in each bin."""
    out = {}
    for lo, hi in bins:
        sel = table[(table.distance_px >= lo) & (table.distance_px <= hi)]
        n = sel.n.sum()
        out[f"{lo}-{hi}"] = float((sel.accuracy * sel.n).sum() / n) if n else float("nan")
    return out


SMALL_REPS = 1  # the tests' small fixed subset: the first block of the test split (108 images at 64 px)


def probe_record(model: torch.nn.Module, task: ProbeTask | None = None) -> dict:
    """The accuracies written beside a bundled checkpoint: per distance bin and overall on
    the full test split, and the number correct on its first block (``SMALL_REPS``), which the
    tests recompute."""
    task = task or ProbeTask()
    full = accuracy_by_distance(model, fixed_test_split(task))
    small = fixed_test_split(task, reps=SMALL_REPS)
    device = next(model.parameters()).device
    small_correct = int(accuracy(model, small.images.to(device), small.labels.to(device)).sum().item())
    return {
        "test_images": int(full.n.sum()),
        "test_accuracy": float((full.accuracy * full.n).sum() / full.n.sum()),
        "bin_accuracy": bin_accuracy(full, distance_bins(task)),
        "distance_accuracy": {int(r.distance_px): float(r.accuracy) for r in full.itertuples()},
        "small_test_images": len(small),
        "small_test_correct": small_correct,
    }
