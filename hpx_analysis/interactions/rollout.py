"""Rollout: the block maps combined into input-pixel maps for a query (a heuristic).

Following Abnar and Zuidema (2020): each block's interaction maps, row-normalised, become
``A_hat = 0.5 A + 0.5 I`` (the residual path), and the blocks' matrices are multiplied
from the first to the last. Where a stage changes the grid, each token of the coarser grid
averages the tokens of the finer grid whose centres lie in its cell (nearest centre), and
at the end each first-grid token spreads its weight evenly over the input pixels of its
cell. A query's row is then a map over input pixels that sums to 1. It ignores the MLPs,
the norms and the values carried, so it is an indication of where information can come
from, not a measurement.
"""

from __future__ import annotations

import torch

from .geometry import TokenGrid

__all__ = ["Rollout", "cell_assignment"]


def cell_assignment(points: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    """Index of the ``grid`` token whose centre is nearest to each point (row, column px).

    Args:
        points: ``(P, 2)`` positions in input pixels.
        grid: the token grid.

    Returns:
        torch.Tensor: ``(P,)`` raster indices.
    """
    return torch.cdist(points.double(), grid.centres.double()).argmin(1)


def _averaging(fine: TokenGrid, coarse: TokenGrid) -> torch.Tensor:
    """``(N_coarse, N_fine)``: each coarse token the mean of the fine tokens in its cell."""
    owner = cell_assignment(fine.centres, coarse)
    m = torch.zeros(coarse.tokens, fine.tokens, dtype=torch.float64)
    m[owner, torch.arange(fine.tokens)] = 1.0
    return m / m.sum(1, keepdim=True).clamp_min(1.0)


class Rollout:
    """The running product of the blocks' ``A_hat`` for one image.

    Args:
        None; call :meth:`add` for each block in forward order, then :meth:`maps`.
    """

    def __init__(self):
        self.product: torch.Tensor | None = None  # (N_current, N_first)
        self.first: TokenGrid | None = None
        self.current: TokenGrid | None = None

    def add(self, grid: TokenGrid, r: torch.Tensor) -> None:
        """Multiply in one block.

        Args:
            grid: the block's token grid.
            r: ``(N, N)`` interaction map ``r(i, j)`` of every query ``i``.
        """
        a = r.double() / r.double().sum(1, keepdim=True).clamp_min(1e-300)
        a_hat = 0.5 * a + 0.5 * torch.eye(grid.tokens, dtype=torch.float64)
        a_hat = a_hat / a_hat.sum(1, keepdim=True)
        if self.product is None:
            self.product, self.first = a_hat, grid
        else:
            if grid.shape != self.current.shape:
                self.product = _averaging(self.current, grid) @ self.product
            self.product = a_hat @ self.product
        self.current = grid

    def maps(self, queries: dict[str, int], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Input-pixel maps of query tokens on the last block's grid.

        Args:
            queries: query name -> raster index on the last grid.
            size: input ``(H, W)`` in pixels.

        Returns:
            dict[str, torch.Tensor]: query name -> ``(H, W)`` map summing to 1.
        """
        if self.product is None:
            return {}
        rows = torch.arange(size[0], dtype=torch.float64)
        cols = torch.arange(size[1], dtype=torch.float64)
        pixels = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
        owner = cell_assignment(pixels, self.first)
        count = torch.bincount(owner, minlength=self.first.tokens).double().clamp_min(1.0)
        out = {}
        for name, token in queries.items():
            row = self.product[token]
            out[name] = (row[owner] / count[owner]).reshape(size)
        return out
