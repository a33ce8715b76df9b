"""ERF metrics on constructed matrices with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from hpx_analysis.erf.metrics import (
    anisotropy,
    axis_mass_fractions,
    centre_of_mass_offset,
    dead_fraction,
    erf_metrics,
    mass_radius,
    radial_profile,
    replknet_scale,
    replknet_squares,
)


def delta(n=21, value=5.0, at=None):
    m = np.zeros((n, n))
    m[at if at is not None else (n // 2, n // 2)] = value
    return m


def test_replknet_scale():
    m = np.array([[0.0, 9.0], [99.0, 0.0]])
    np.testing.assert_allclose(replknet_scale(m), [[0, 0.5], [1, 0]])
    assert np.all(replknet_scale(np.zeros((3, 3))) == 0)


def test_delta_at_centre_smallest_candidate_square():
    sq = replknet_squares(delta())
    # RepLKNet's candidates start at side 3: the whole mass is inside it for every threshold
    assert list(sq["side"]) == [3, 3, 3, 3]
    assert sq["area_ratio"].iloc[0] == pytest.approx(9 / 441)
    assert mass_radius(delta(), 0.5) == 0 and mass_radius(delta(), 0.9) == 0
    assert centre_of_mass_offset(delta()) == (0.0, 0.0)
    assert dead_fraction(delta()) == pytest.approx(440 / 441)


def test_uniform_matrix_squares_and_none():
    n = 21
    sq = replknet_squares(np.ones((n, n)))
    # a centred square of side s holds s^2 / n^2 of a uniform mass (scaling keeps it uniform)
    for t, side in zip((0.2, 0.3, 0.5), sq["side"][:3]):
        assert side**2 / n**2 > t and (side - 2) ** 2 / n**2 <= t
    assert list(sq["side"][:3]) == [11, 13, 15]
    # the largest candidate (side 19) holds 361/441 < 0.99: no square qualifies
    assert sq["side"].iloc[3] is None and sq["area_ratio"].iloc[3] is None
    assert dead_fraction(np.ones((n, n))) == 0.0
    assert anisotropy(np.ones((n, n))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("half", [2, 4, 6])
def test_centred_block_of_known_size(half):
    n = 31
    m = np.zeros((n, n))
    m[15 - half : 16 + half, 15 - half : 16 + half] = 3.0
    sq = replknet_squares(m, thresholds=(0.5, 0.99))
    assert sq["side"].iloc[1] == 2 * half + 1
    assert sq["area_ratio"].iloc[1] == pytest.approx((2 * half + 1) ** 2 / n**2)
    # radial profile: everything is within the block's corner distance
    prof = radial_profile(m)
    corner = int(np.ceil(np.hypot(half, half)))
    assert prof["cumulative_fraction"].iloc[corner] == pytest.approx(1.0)
    assert prof["cumulative_fraction"].iloc[corner - 1] < 1.0
    assert mass_radius(m, 0.9) <= corner


def test_radial_profile_ring():
    n = 41
    rows, cols = np.mgrid[:n, :n] - n // 2
    m = ((np.hypot(rows, cols) > 9) & (np.hypot(rows, cols) <= 10)).astype(float)
    prof = radial_profile(m)
    assert prof["cumulative_fraction"].iloc[9] == 0.0 and prof["cumulative_fraction"].iloc[10] == pytest.approx(1)
    assert mass_radius(m, 0.5) == 10 and mass_radius(m, 0.9) == 10
    assert np.all(np.diff(prof["cumulative_fraction"]) >= 0)


def test_shifted_mass_centre_of_mass():
    m = delta(21, at=(13, 6))  # 3 rows down, 4 columns left of the centre (10, 10)
    assert centre_of_mass_offset(m) == pytest.approx((3.0, -4.0))
    two = delta(21, at=(10, 14)) + delta(21, value=15.0, at=(10, 6))
    assert centre_of_mass_offset(two) == pytest.approx((0.0, (5 * 4 - 15 * 4) / 20))
    assert erf_metrics(m)["com_offset_px"] == pytest.approx(5.0)


def test_horizontal_and_vertical_lines_anisotropy():
    h = np.zeros((21, 21))
    h[10, 3:18] = 1.0
    assert anisotropy(h) == pytest.approx(1.0)
    assert anisotropy(h.T) == pytest.approx(-1.0)
    assert axis_mass_fractions(h) == pytest.approx((1.0, 1 / 15))
    cross = h + h.T
    assert anisotropy(cross) == pytest.approx(0.0, abs=1e-12)
    rect = np.zeros((21, 21))
    rect[8:13, 2:19] = 1.0  # wider than tall
    assert 0 < anisotropy(rect) < 1


def test_dead_fraction_threshold():
    m = np.full((10, 10), 1e-4)
    m[0, 0] = 1.0
    m[0, 1] = 2e-3
    assert dead_fraction(m) == pytest.approx(98 / 100)
    assert dead_fraction(m, threshold=1e-5) == 0.0
    assert dead_fraction(np.zeros((4, 4))) == 1.0


def test_zero_matrix_gives_none_not_crash():
    out = erf_metrics(np.zeros((8, 8)))
    assert out["square_side_t0.2"] is None and out["r50_px"] is None and out["anisotropy"] is None
    assert out["dead_fraction"] == 1.0
    assert radial_profile(np.zeros((8, 8))).empty


def test_erf_metrics_keys_and_bad_input():
    out = erf_metrics(np.random.default_rng(0).random((16, 16)))
    for t in (0.2, 0.3, 0.5, 0.99):
        assert f"square_side_t{t}" in out and f"square_area_t{t}" in out
    for key in (
        "r50_px",
        "r90_px",
        "r50_rel",
        "com_offset_px",
        "anisotropy",
        "dead_fraction",
        "centre_row_mass",
        "centre_col_mass",
    ):
        assert key in out
    assert out["r50_px"] <= out["r90_px"]
    with pytest.raises(ValueError, match="negative"):
        erf_metrics(-np.ones((4, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        erf_metrics(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="2D"):
        erf_metrics(np.ones(5))
