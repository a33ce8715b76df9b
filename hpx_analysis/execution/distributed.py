"""Running an analysis across processes started by ``torchrun`` (torch.distributed).

Under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` in the environment) :func:`dist_context`
joins the process group (gloo for CPU models, nccl for CUDA ones). Each process takes
every ``world_size``-th item starting at its rank; sums are reduced as float64, so K
processes give the single-process result (counts exactly, sums up to the order of float64
additions).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "dist_context", "shutdown", "all_reduce_sum", "broadcast_object"]

T = TypeVar("T")


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

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's share: ``items[rank::world_size]``."""
        return list(items)[self.rank :: self.world_size]


def dist_context(device: torch.device | str = "cpu") -> DistContext:
    """The current process group, started from torchrun's environment when needed.
    Without one: a single process (rank 0 of 1)."""
    device = torch.device(device)
    if not dist.is_available():
        return DistContext()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
            return DistContext()
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(shutdown)  # a group left open can abort the process at exit
    return DistContext(dist.get_rank(), dist.get_world_size())


def shutdown() -> None:
    """Leave the process group (after every rank got here), if one is running."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _reduce_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over all processes, as a float64 CPU tensor (a copy in one process)."""
    out = t.detach().to("cpu", torch.float64).clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        on_device = out.to(_reduce_device())
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        out = on_device.cpu()
    return out


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
