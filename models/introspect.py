"""Walk the token mixers of our MetaFormers and of timm's (ConvFormer, CAFormer, ...)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from .mixers import is_long_conv_mixer

__all__ = ["iter_token_mixers", "long_conv_mixers"]


def iter_token_mixers(model: nn.Module) -> Iterator[tuple[int, int, nn.Module]]:
    """The token mixers of a MetaFormer, block by block.

    Args:
        model: this package's models (``stages[i][j]``) or timm's MetaFormers
            (``stages[i].blocks[j]``); any other model yields nothing.

    Returns:
        Iterator: ``(stage, block, token_mixer)`` for every block, in order.
    """
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
    """The token mixers with the long-convolution interface (:class:`.mixers.LongConvMixer`).

    Args:
        model: any model (see :func:`iter_token_mixers`).

    Returns:
        Iterator: ``(stage, block, mixer)`` of the long-convolution mixers, in order.
    """
    for i, j, m in iter_token_mixers(model):
        if is_long_conv_mixer(m):
            yield i, j, m
