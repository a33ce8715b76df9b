"""Sharding a dataset across processes started by ``torchrun`` and reducing sums exactly.

Under ``torchrun`` (environment ``RANK``/``WORLD_SIZE``) :func:`init_from_env` joins a
``gloo`` process group (the reductions here are small CPU tensors, so gloo works with
CPU and GPU models alike). Each process takes every ``world``-th item starting at its
rank. Counts and sums are reduced as float64 (integers up to 2**53 exactly).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["Shard", "init_from_env", "current_shard", "all_reduce_sum"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's items: ``items[rank::world]``."""
        return list(items[self.rank::self.world])


def init_from_env() -> Shard:
    """Join the process group that ``torchrun`` describes in the environment, if any
    (single process otherwise), and return this process's shard."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("gloo")
    return current_shard()


def current_shard() -> Shard:
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all processes (a float64 CPU copy; unchanged in a single process)."""
    out = t.detach().to("cpu", torch.float64).clone()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
