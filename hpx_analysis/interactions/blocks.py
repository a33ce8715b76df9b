"""The blocks of a model whose token mixers are analysed, and their inputs for one image.

MetaFormers (this package's and timm's: ``stages[i][j].token_mixer``) give one entry per
block with its stage; timm's ViT/DeiT (``blocks[k].attn``) give stage 0, block ``k``. The
inputs are taken with forward pre-hooks during one plain forward pass; the hooks are
removed afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models import iter_token_mixers
from ..models.fast import fast_paths
from .definitions import is_known_mixer, mixer_name

__all__ = ["MixerBlock", "find_blocks", "capture_inputs", "NoMixersError"]


class NoMixersError(ValueError):
    """The model has no token mixers this analysis can find (the message names the model)."""


@dataclass(frozen=True)
class MixerBlock:
    """One block: its stage and index, the token mixer, and why it is skipped (or "")."""

    stage: int
    block: int
    mixer: nn.Module
    skip_reason: str = ""

    @property
    def name(self) -> str:
        """``"STAGE.BLOCK"``."""
        return f"{self.stage}.{self.block}"

    @property
    def mixer_name(self) -> str:
        """The mixer's class name."""
        return mixer_name(self.mixer)


def _vit_mixers(model: nn.Module):
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        return []
    return [(0, k, blk.attn) for k, blk in enumerate(blocks) if hasattr(blk, "attn")]


def find_blocks(model: nn.Module, wanted: tuple[tuple[int, int], ...] | None = None) -> list[MixerBlock]:
    """The model's blocks (all, or the ``wanted`` ``(stage, block)`` pairs), each with the
    reason it is skipped when its mixer is not decomposed.

    Args:
        model: a model of this package, a timm MetaFormer or a timm ViT/DeiT.
        wanted: ``((stage, block), ...)`` or None for all.

    Returns:
        list[MixerBlock]: in forward order.

    Raises:
        NoMixersError: the model has no token mixers, or a wanted block does not exist.
    """
    found = list(iter_token_mixers(model)) or _vit_mixers(model)
    if not found:
        raise NoMixersError(f"{type(model).__name__} has no MetaFormer token mixers or ViT attention blocks to analyse")
    present = {(s, b) for s, b, _ in found}
    missing = [f"{s}.{b}" for s, b in (wanted or ()) if (s, b) not in present]
    if missing:
        last = max(present)
        raise NoMixersError(
            f"{type(model).__name__} has no block {', '.join(missing)} (blocks run from 0.0 to {last[0]}.{last[1]})"
        )
    out = []
    for s, b, mixer in found:
        if wanted is not None and (s, b) not in wanted:
            continue
        known, why = is_known_mixer(mixer)
        out.append(MixerBlock(s, b, mixer, "" if known else why))
    return out


def capture_inputs(model: nn.Module, image: torch.Tensor, blocks: list[MixerBlock]) -> dict[str, torch.Tensor]:
    """The input of each block's token mixer for one image (one forward pass, through the
    fast paths where they are on: the same inputs to float32 rounding).

    Args:
        model: the model (left as found: the hooks are removed).
        image: ``(1, 3, H, W)`` on the model's device.
        blocks: the blocks whose inputs are kept.

    Returns:
        dict[str, torch.Tensor]: ``"STAGE.BLOCK"`` -> the mixer's input, detached.
    """
    captured: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(_module, args):
            captured[name] = args[0].detach()

        return hook

    handles = [blk.mixer.register_forward_pre_hook(keeper(blk.name)) for blk in blocks if not blk.skip_reason]
    try:
        with torch.no_grad(), fast_paths(model):
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return captured
