"""Token grids in input pixels: where each token of a stage's map sits in the image.

The position of a stage's centre unit and the stride come from the ERF's geometry
(:func:`hpx_analysis.erf.geometry.unit_position`: the chain of strided convolutions from the
input to the map); token ``(r, c)`` sits at ``centre + ((r - r0) * stride_r, (c - c0) *
stride_c)`` for the centre unit ``(r0, c0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..erf.geometry import unit_position
from ..erf.unit import ErfUnit
from .settings import NAMED_QUERIES

__all__ = ["TokenGrid", "token_grid", "query_token"]


@dataclass(frozen=True)
class TokenGrid:
    """A ``shape = (h, w)`` token grid and its token centres ``(h * w, 2)`` (row, column in
    input pixels, raster order); ``rule`` says how the positions were found."""

    shape: tuple[int, int]
    centres: torch.Tensor
    rule: str

    @property
    def tokens(self) -> int:
        """``h * w``."""
        return self.shape[0] * self.shape[1]


def token_grid(model: nn.Module, size: int, stage: int) -> TokenGrid:
    """The token grid of ``stage``'s map at input ``size``.

    Args:
        model: the model (a stage is an index of ``forward_intermediates``; for ViT/DeiT,
            whose blocks share one grid, stage 0).
        size: input side in pixels.
        stage: the stage.

    Returns:
        TokenGrid: its shape and token centres.
    """
    pos = unit_position(model, size, ErfUnit(stage=stage))
    h, w = pos["map_size"]
    r0, c0 = pos["index"]
    (pr, pc), (sr, sc) = pos["centre_px"], pos["stride"]
    rows = pr + (torch.arange(h, dtype=torch.float64) - r0) * sr
    cols = pc + (torch.arange(w, dtype=torch.float64) - c0) * sc
    centres = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    return TokenGrid((int(h), int(w)), centres, pos["rule"])


def query_token(grid: TokenGrid, query: str) -> int:
    """The token (raster index) of a map query on ``grid``.

    Args:
        grid: the block's token grid.
        query: ``centre``, ``edge``, ``corner`` or ``"ROW:COL"`` in input pixels (the token
            whose centre is nearest; ties go to the first in raster order).

    Returns:
        int: the token's raster index.
    """
    h, w = grid.shape
    if query in NAMED_QUERIES:
        r, c = NAMED_QUERIES[query](h, w)
        return r * w + c
    row, col = (float(v) for v in query.split(":"))
    d = (grid.centres - torch.tensor([row, col], dtype=grid.centres.dtype)).pow(2).sum(1)
    return int(torch.argmin(d))
