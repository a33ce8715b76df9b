"""The interaction summaries of probe models and borders, against hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpx_analysis.interactions.geometry import TokenGrid
from hpx_analysis.interactions.probe import (
    border_inner_distance,
    mass_share_by_bin,
    pixel_mass,
    readout_mass_shares,
    square_mass_share,
)
from hpx_analysis.interactions.result import BlockInteractions


def _grid_4x4() -> TokenGrid:
    """A 4 x 4 token grid over an 8 x 8 image: token (r, c) covers pixels 2r..2r+1, 2c..2c+1."""
    centres = torch.tensor([(2 * r + 0.5, 2 * c + 0.5) for r in range(4) for c in range(4)], dtype=torch.float64)
    return TokenGrid((4, 4), centres, "hand")


def test_pixel_mass_spreads_each_token_over_its_cell():
    grid = _grid_4x4()
    token_map = torch.zeros(4, 4)
    token_map[1, 2] = 8.0
    mass = pixel_mass(token_map, grid, (8, 8))
    expected = np.zeros((8, 8))
    expected[2:4, 4:6] = 2.0  # 8 spread over the 4 pixels of the cell
    np.testing.assert_allclose(mass.numpy(), expected)


def test_square_share_of_a_one_token_map_and_chance():
    grid = _grid_4x4()
    token_map = torch.zeros(4, 4)
    token_map[0, 0] = 1.0
    # a 1-px square on pixel (0, 0): a quarter of token (0, 0)'s cell
    share, chance = square_mass_share(token_map, grid, (8, 8), (0, 0), 1)
    assert share == pytest.approx(0.25)
    assert chance == pytest.approx(1 / 64)
    # a 3-px square centred on (2, 2) overlaps cells (0,0): 1 px, (0,1): 2, (1,0): 2, (1,1): 4
    share, chance = square_mass_share(token_map, grid, (8, 8), (2, 2), 3)
    assert share == pytest.approx(1 / 4)
    assert chance == pytest.approx(9 / 64)
    # a uniform map gets exactly the chance share
    share, chance = square_mass_share(torch.ones(4, 4), grid, (8, 8), (5, 3), 3)
    assert share == pytest.approx(chance) == pytest.approx(9 / 64)


def test_mass_share_by_bin_means_and_ratio():
    import pandas as pd

    shares = pd.DataFrame(
        {"image": [0, 1, 2], "distance_px": [2, 3, 9], "share": [0.2, 0.4, 0.0], "chance": [0.01, 0.01, 0.02]}
    )
    table = mass_share_by_bin(shares, [(2, 5), (6, 9), (10, 12)])
    assert table.images.tolist() == [2, 1, 0]
    assert table.share[0] == pytest.approx(0.3) and table.ratio[0] == pytest.approx(30.0)
    assert table.ratio[1] == 0.0
    assert np.isnan(table.share[2])


def test_border_against_inner_queries():
    dist = np.ones(9)
    dist[4] = 10.0  # the only inner token of a 3 x 3 grid
    block = BlockInteractions(0, 0, "M", (3, 3), [1.0], 9, sample=np.arange(9), query_distance_px=dist)
    out = border_inner_distance(block)
    assert out == {"border_px": 1.0, "inner_px": 10.0, "border_queries": 8, "inner_queries": 1}
    # a sample of two queries, one on each side of a 5 x 5 grid's border (ring of width 2)
    sample, dist = np.array([6, 12]), np.array([3.0, 5.0])
    block = BlockInteractions(0, 0, "M", (5, 5), [1.0], 2, sample=sample, query_distance_px=dist)
    out = border_inner_distance(block, ring=1)
    assert np.isnan(out["border_px"]) and (out["inner_px"], out["inner_queries"]) == (4.0, 2)
    out = border_inner_distance(block, ring=2)
    assert (out["border_px"], out["inner_px"], out["border_queries"]) == (3.0, 5.0, 1)


def test_conv_probe_readout_puts_no_mass_on_squares_beyond_its_window():
    """A SepConv 7x7 probe's readout token reads 3 tokens (stride 4) each way: a square whose
    pixels all lie outside those cells gets exactly none of its mass; a near one gets some."""
    from hpx_analysis.io.weights import load_model
    from hpx_analysis.probe.evaluate import fixed_test_split
    from hpx_analysis.probe.task import ProbeBatch, ProbeTask

    task = ProbeTask()
    test = fixed_test_split(task, reps=1)
    pick = torch.cat([torch.nonzero(test.distances == 2)[:2, 0], torch.nonzero(test.distances >= 22)[:4, 0]])
    batch = ProbeBatch(test.images[pick], test.labels[pick], test.distances[pick], test.centres[pick])
    model = load_model("conv_probe=random", seed=0).model
    shares = readout_mass_shares(model, batch, task.square)
    assert (shares.share[shares.distance_px >= 22] == 0).all()
    assert (shares.share[shares.distance_px == 2] > 0).all()
    assert np.allclose(shares.chance, task.square**2 / task.size**2)
