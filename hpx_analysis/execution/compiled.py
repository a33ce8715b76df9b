"""Run a model's repeated blocks through ``torch.compile`` for the duration of a block.

Regional compilation: the blocks of a network (the children of a container whose children
are all of one class: a MetaFormer stage's blocks, a ResNet layer's bottlenecks, a ViT's
blocks) are compiled one by one, so that blocks of one shape share their compiled code and
compiling takes a fraction of what the whole network would. The caller's model is left as
found: the compiled wrappers replace the blocks only inside the ``with`` block.

On an H100, Inductor's fused element-wise and layer-norm kernels took hpx_former_s18's
float32 ERF at batch 8 and 1024 px from 19.9 to 17.6 ms per image and its peak memory from
13.2 to 11.3 GiB (``benchmarks/erf_benchmark.py --compile``). Compiling took 50 s the first
time on that machine and 12-15 s once Inductor's on-disk cache held the kernels. On the
2-core CPU this project is developed on, the compiled pass was slower (3.9-4.1 s against
2.8-3.1 s per image), so it is meant for GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["repeated_blocks", "compiling"]

# per-shape recompilations of a block's code (stages, a last smaller batch, a check pass in
# another precision) stay compiled instead of falling back to eager after torch's default 8
_RECOMPILE_LIMIT = 64


def repeated_blocks(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(container, name, block)`` for every child of an ``nn.Sequential`` or
    ``nn.ModuleList`` whose children all have one class, outermost containers first; blocks
    are not searched further. Containers of containers (a list of stages that are sequences
    of blocks) give the blocks of their children."""
    found: list[tuple[nn.Module, str, nn.Module]] = []
    containers = (nn.Sequential, nn.ModuleList)

    def visit(module: nn.Module) -> None:
        children = list(module.named_children())
        if isinstance(module, containers) and children and len({type(child) for _, child in children}) == 1:
            if not isinstance(children[0][1], containers):
                found.extend((module, name, child) for name, child in children)
                return
        for _, child in children:
            visit(child)

    for _, child in model.named_children():
        visit(child)
    return found


@contextlib.contextmanager
def compiling(model: nn.Module, backend: str = "inductor") -> Iterator[int]:
    """Within the block, ``model``'s repeated blocks (see :func:`repeated_blocks`) are
    ``torch.compile(block, backend=backend, dynamic=False)`` wrappers; yields how many.
    A block's ``forward_at`` (the last MetaFormer block's entry point for one output
    position, see ``HyenaMetaFormer.forward_features_at``) is compiled as well, so that the
    ERF's last block does not run eagerly. Compiled code is kept by torch between uses, so a
    second run with the same shapes does not compile again."""
    blocks = repeated_blocks(model)
    entry_points = []  # blocks given a compiled forward_at, which is removed again on exit
    try:
        for container, name, block in blocks:
            forward_at = getattr(block, "forward_at", None)
            if forward_at is not None:
                block.forward_at = torch.compile(forward_at, backend=backend, dynamic=False)
                entry_points.append(block)
            setattr(container, name, torch.compile(block, backend=backend, dynamic=False))
        with _recompile_limit(_RECOMPILE_LIMIT):
            yield len(blocks)
    finally:
        for container, name, block in blocks:
            setattr(container, name, block)
        for block in entry_points:
            del block.forward_at


def _recompile_limit(limit: int) -> contextlib.AbstractContextManager[None]:
    config = torch._dynamo.config
    return config.patch(recompile_limit=max(limit, config.recompile_limit))
