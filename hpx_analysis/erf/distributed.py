"""Combining ERF accumulations of several processes (see :mod:`hpx_analysis.execution.distributed`).

Images are sharded round-robin across ranks; at the end the float64 sums are added with
``all_reduce`` and the image lists gathered,
so K processes give the single-process matrix (up to the order of float64 additions,
about 1e-16 relative). Reported seconds are the slowest rank's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..execution.distributed import DistContext, all_reduce_sum
from .state import ErfAccumulator

__all__ = ["reduce_accumulator"]


def reduce_accumulator(state: ErfAccumulator, ctx: DistContext) -> ErfAccumulator:
    """Every rank's accumulation combined (the same result on every rank).

    Args:
        state: this rank's accumulation.
        ctx: the process group.

    Returns:
        ErfAccumulator: the sum over ranks (``state`` itself in one process).
    """
    if not ctx.distributed:
        return state
    shape = None if state.total is None else tuple(state.total.shape)
    gathered: list = [None] * ctx.world_size
    dist.all_gather_object(
        gathered,
        {
            "used": state.used,
            "skipped": state.skipped,
            "shape": shape,
            "nonfinite": state.nonfinite_values,
            "seconds": state.seconds,
        },
    )
    shapes = {g["shape"] for g in gathered if g["shape"] is not None}
    if len(shapes) > 1:
        raise ValueError(f"ranks accumulated maps of different shapes: {sorted(shapes)}")
    merged = ErfAccumulator(
        settings=dict(state.settings),
        nonfinite_values=sum(g["nonfinite"] for g in gathered),
        seconds=max(g["seconds"] for g in gathered),
    )
    for g in gathered:
        merged.used.extend(g["used"])
        merged.skipped.extend(g["skipped"])
    if shapes:
        (common,) = shapes
        local = state.total if state.total is not None else np.zeros(common, dtype=np.float64)
        merged.total = all_reduce_sum(torch.from_numpy(np.ascontiguousarray(local, dtype=np.float64))).numpy()
    return merged
