"""Walk the token mixers of our MetaFormers and of timm's (ConvFormer, CAFormer, ...)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from .mixers import is_long_conv_mixer

__all__ = ["iter_token_mixers", "long_conv_mixers"]


def iter_token_mixers(model: nn.Module) -> Iterator[tuple[int, int, nn.Module]]:
    """Yield ``(stage, block, token_mixer)``; works for this package's models
    (``stages[i][j]``) and timm's MetaFormers (``stages[i].blocks[j]``). Models without
    MetaFormer blocks yield nothing."""
    if hasattr(model, "token_mixers"):
        yield from model.token_mixers()
        return
    for i, stage in enumerate(getattr(model, "stages", []) or []):
        blocks = getattr(stage, "blocks", stage)
        if not isinstance(blocks, (nn.Sequential, nn.ModuleList)):
            continue
        for j, block in enumerate(blocks):
            mixer = getattr(block, "token_mixer", None)
            if mixer is not None:
                yield i, j, mixer


def long_conv_mixers(model: nn.Module) -> Iterator[tuple[int, int, nn.Module]]:
    """Only the mixers with the long-convolution interface."""
    for i, j, m in iter_token_mixers(model):
        if is_long_conv_mixer(m):
            yield i, j, m
