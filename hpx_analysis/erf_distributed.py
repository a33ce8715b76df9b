"""Running an ERF accumulation across processes (torchrun / torch.distributed).

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` in the environment) the process group is
started with gloo on CPU or nccl on CUDA. Images are sharded round-robin across ranks;
at the end the float64 sums are added with ``all_reduce`` and the image lists gathered,
so K processes give the single-process matrix (up to the order of float64 additions,
about 1e-16 relative). Reported seconds are the slowest rank's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .erf_state import ErfAccumulator

__all__ = ["DistContext", "dist_context", "shard", "reduce_accumulator", "broadcast_object"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_context(device: torch.device | str = "cpu") -> DistContext:
    """The current process group, starting it from torchrun's environment when needed
    (gloo for CPU, nccl for CUDA). Without one: a single process (rank 0 of 1)."""
    device = torch.device(device)
    if not dist.is_available():
        return DistContext()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
            return DistContext()
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size())


def shard(items: list, ctx: DistContext) -> list:
    """This rank's share: every ``world_size``-th item starting at ``rank``."""
    return list(items)[ctx.rank::ctx.world_size]


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _reduce_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_accumulator(state: ErfAccumulator, ctx: DistContext) -> ErfAccumulator:
    """Every rank's accumulation combined (the same result on every rank)."""
    if not ctx.distributed:
        return state
    shape = None if state.total is None else tuple(state.total.shape)
    gathered: list = [None] * ctx.world_size
    dist.all_gather_object(gathered, {"used": state.used, "skipped": state.skipped, "shape": shape,
                                      "nonfinite": state.nonfinite_values, "seconds": state.seconds})
    shapes = {g["shape"] for g in gathered if g["shape"] is not None}
    if len(shapes) > 1:
        raise ValueError(f"ranks accumulated maps of different shapes: {sorted(shapes)}")
    merged = ErfAccumulator(settings=dict(state.settings),
                            nonfinite_values=sum(g["nonfinite"] for g in gathered),
                            seconds=max(g["seconds"] for g in gathered))
    for g in gathered:
        merged.used.extend(g["used"])
        merged.skipped.extend(g["skipped"])
    if shapes:
        (common,) = shapes
        local = state.total if state.total is not None else np.zeros(common, dtype=np.float64)
        t = torch.from_numpy(np.ascontiguousarray(local, dtype=np.float64)).to(_reduce_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        merged.total = t.cpu().numpy()
    return merged
