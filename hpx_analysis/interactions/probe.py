"""Interaction summaries that answer a question: where the readout unit of a probe model puts
its interaction mass (on the coloured square or not), and whether border query tokens read
further than inner ones.

The readout unit's map is the last analysed block's map ``r(readout, .)`` for the query
token at the centre of its grid (``(h // 2, w // 2)``, the unit a probe model is read out
at). Each token's mass is spread evenly over the input pixels of its cell (the pixels
whose nearest token centre it is, as in the rollout); the square's share is the mass on
the square's pixels over the whole mass. The share expected by chance is the share a
uniform map over the token grid gets the same way (the square's area over the image's
when all cells have the same size).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from .blocks import capture_inputs, find_blocks
from .definitions import decompose
from .geometry import TokenGrid, query_token, token_grid
from .rollout import cell_assignment

__all__ = [
    "pixel_mass",
    "square_mass_share",
    "readout_mass_shares",
    "mass_share_by_bin",
    "border_inner_distance",
    "SHARE_COLUMNS",
]

SHARE_COLUMNS = ["image", "distance_px", "share", "chance"]


def pixel_mass(token_map: torch.Tensor, grid: TokenGrid, size: tuple[int, int]) -> torch.Tensor:
    """A token map spread over input pixels: each token's value divided evenly over its cell.

    Args:
        token_map: ``(h, w)`` or ``(h * w,)`` non-negative values on ``grid``.
        grid: the token grid (centres in input pixels).
        size: input ``(H, W)`` in pixels.

    Returns:
        torch.Tensor: ``(H, W)`` float64 map with the same total as ``token_map``.
    """
    rows = torch.arange(size[0], dtype=torch.float64)
    cols = torch.arange(size[1], dtype=torch.float64)
    pixels = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    owner = cell_assignment(pixels, grid)
    count = torch.bincount(owner, minlength=grid.tokens).double().clamp_min(1.0)
    values = token_map.reshape(-1).double().cpu()
    return (values[owner] / count[owner]).reshape(size)


def square_mass_share(
    token_map: torch.Tensor, grid: TokenGrid, size: tuple[int, int], centre: tuple[int, int], side: int
) -> tuple[float, float]:
    """The share of a token map's mass on a square of pixels, and the share of a uniform map.

    Args:
        token_map: ``(h, w)`` non-negative map on ``grid`` (e.g. ``r(readout, .)``).
        grid: the token grid.
        size: input ``(H, W)`` in pixels.
        centre: the square's centre pixel ``(row, column)``.
        side: the square's side in pixels (odd).

    Returns:
        tuple[float, float]: ``(share, chance)``, both in ``[0, 1]``.
    """
    half = side // 2
    r0, c0 = max(centre[0] - half, 0), max(centre[1] - half, 0)
    r1, c1 = centre[0] + half + 1, centre[1] + half + 1
    mass = pixel_mass(token_map, grid, size)
    uniform = pixel_mass(torch.ones(grid.tokens, dtype=torch.float64), grid, size)
    share = float(mass[r0:r1, c0:c1].sum() / mass.sum().clamp_min(1e-300))
    chance = float(uniform[r0:r1, c0:c1].sum() / uniform.sum())
    return share, chance


@torch.no_grad()
def readout_mass_shares(model: nn.Module, batch, side: int) -> pd.DataFrame:
    """Per probe image: the readout unit's share of interaction mass on the square, and chance.

    Args:
        model: a probe model (its last analysed block's centre token is the readout unit),
            in eval mode; left as found.
        batch: a :class:`~hpx_analysis.probe.task.ProbeBatch` (images, distances, square
            centres).
        side: the square's side in pixels (``ProbeTask.square``).

    Returns:
        pandas.DataFrame: columns :data:`SHARE_COLUMNS`, one row per image.
    """
    blocks = [b for b in find_blocks(model) if not b.skip_reason]
    last = blocks[-1]
    size = tuple(batch.images.shape[-2:])
    grid = token_grid(model, size[0], last.stage)
    readout = query_token(grid, "centre")
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    device = next(model.parameters()).device
    rows = []
    for k in range(len(batch)):
        x = capture_inputs(model, batch.images[k : k + 1].to(device), [last])[last.name]
        contrib = decompose(last.mixer, x, grid.shape, prefix)
        c, _ = contrib.contributions(torch.tensor([readout + prefix], device=x.device))
        r = torch.linalg.vector_norm(c[0, prefix:], dim=-1).cpu()
        centre = tuple(int(v) for v in batch.centres[k])
        share, chance = square_mass_share(r, grid, size, centre, side)
        rows.append({"image": k, "distance_px": int(batch.distances[k]), "share": share, "chance": chance})
    return pd.DataFrame(rows, columns=SHARE_COLUMNS)


def mass_share_by_bin(shares: pd.DataFrame, bins) -> pd.DataFrame:
    """The mean share and chance per distance bin, and their ratio.

    Args:
        shares: :func:`readout_mass_shares` rows.
        bins: ``[(lo, hi), ...]`` inclusive distance bins in pixels.

    Returns:
        pandas.DataFrame: ``bin, images, share, chance, ratio`` (share over chance).
    """
    rows = []
    for lo, hi in bins:
        sel = shares[(shares.distance_px >= lo) & (shares.distance_px <= hi)]
        share, chance = (float(sel.share.mean()), float(sel.chance.mean())) if len(sel) else (np.nan, np.nan)
        ratio = share / chance if len(sel) and chance > 0 else np.nan
        rows.append({"bin": f"{lo}-{hi}", "images": len(sel), "share": share, "chance": chance, "ratio": ratio})
    return pd.DataFrame(rows, columns=["bin", "images", "share", "chance", "ratio"])


def border_inner_distance(block, ring: int = 1) -> dict:
    """Mean interaction distance of the sampled border query tokens against the inner ones.

    Args:
        block: a :class:`~hpx_analysis.interactions.result.BlockInteractions` (its sampled
            queries ``sample`` and their distances ``query_distance_px``, mean over images).
        ring: how many outer rows and columns of tokens count as the border.

    Returns:
        dict: ``border_px`` and ``inner_px`` (mean over the queries of each kind; NaN when
        none was sampled) and ``border_queries``, ``inner_queries`` (how many).
    """
    h, w = block.grid
    sample = np.asarray(block.sample, dtype=np.int64)
    dist = np.asarray(block.query_distance_px, dtype=np.float64)
    row, col = sample // w, sample % w
    border = (row < ring) | (row >= h - ring) | (col < ring) | (col >= w - ring)
    return {
        "border_px": float(dist[border].mean()) if border.any() else float("nan"),
        "inner_px": float(dist[~border].mean()) if (~border).any() else float("nan"),
        "border_queries": int(border.sum()),
        "inner_queries": int((~border).sum()),
    }
