"""Metrics on a raw ERF matrix (the float64 mean contribution map, H x W, non-negative).

- RepLKNet's analysis (:func:`replknet_squares`): scale by ``log10(x + 1)``, divide by the
  maximum; for each threshold t the smallest centred square whose sum exceeds t times the
  total. As in RepLKNet's script, candidate squares have odd sides ``2i + 1`` for
  ``i = 1 .. min(H, W) // 2 - 1`` around ``(H // 2, W // 2)`` and the comparison is strict;
  where no candidate qualifies the side and area ratio are ``None``.
- Everything else works on the raw (unscaled) matrix, read as a mass distribution:
  - :func:`radial_profile`: cumulative fraction of the mass within Euclidean distance
    ``r`` (pixels) of the centre ``(H // 2, W // 2)``, for integer ``r``; ``r50``/``r90``
    are the smallest radii holding at least 50% / 90% of the mass;
  - :func:`centre_of_mass_offset`: centre of mass minus the centre, in pixels (rows down,
    columns right);
  - :func:`anisotropy`: ``(sx - sy) / (sx + sy)`` with ``sx``, ``sy`` the root mean square
    horizontal / vertical distances of the mass from the centre: +1 for a horizontal line,
    -1 for a vertical one, 0 for any pattern symmetric under a 90 degree rotation. The
    fractions of the mass on the centre row and on the centre column are reported too
    (the cross-shaped artifacts of H_px show up there);
  - :func:`dead_fraction`: share of pixels whose value is at most ``1e-3`` times the
    maximum (``DEAD_THRESHOLD``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "THRESHOLDS",
    "DEAD_THRESHOLD",
    "replknet_scale",
    "replknet_squares",
    "radial_profile",
    "mass_radius",
    "centre_of_mass_offset",
    "anisotropy",
    "axis_mass_fractions",
    "dead_fraction",
    "erf_metrics",
]

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
DEAD_THRESHOLD = 1e-3


def _check(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"an ERF matrix must be a non-empty 2D array, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("the ERF matrix has non-finite values")
    if np.any(m < 0):
        raise ValueError("the ERF matrix has negative values; contribution scores are non-negative")
    return m


def _centre(m: np.ndarray) -> tuple[int, int]:
    return m.shape[0] // 2, m.shape[1] // 2


def replknet_scale(matrix) -> np.ndarray:
    """``log10(x + 1)`` divided by its maximum (all zeros stay zeros)."""
    s = np.log10(_check(matrix) + 1.0)
    top = s.max()
    return s / top if top > 0 else s


def replknet_squares(matrix, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Per threshold: side length and area ratio of the smallest qualifying centred square."""
    s = replknet_scale(matrix)
    h, w = s.shape
    ci, cj = _centre(s)
    total = s.sum()
    rows = []
    for t in thresholds:
        side = area = None
        if total > 0:
            for i in range(1, min(h, w) // 2):
                if s[ci - i : ci + i + 1, cj - i : cj + i + 1].sum() / total > t:
                    side = 2 * i + 1
                    area = side * side / (h * w)
                    break
        rows.append({"threshold": t, "side": side, "area_ratio": area})
    return pd.DataFrame(rows, columns=["threshold", "side", "area_ratio"], dtype=object)


def _distances(m: np.ndarray) -> np.ndarray:
    ci, cj = _centre(m)
    rows = np.arange(m.shape[0])[:, None] - ci
    cols = np.arange(m.shape[1])[None, :] - cj
    return np.sqrt(rows**2 + cols**2)


def radial_profile(matrix) -> pd.DataFrame:
    """Cumulative mass fraction within distance ``radius`` of the centre (integer radii from
    0 to the farthest pixel). Empty when the matrix has no mass."""
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return pd.DataFrame({"radius": [], "cumulative_fraction": []})
    d = _distances(m)
    r_max = int(np.ceil(d.max()))
    radius_bin = np.ceil(d - 1e-9).astype(int)  # pixel at distance d counts from radius ceil(d)
    mass = np.bincount(radius_bin.ravel(), weights=m.ravel(), minlength=r_max + 1)
    return pd.DataFrame({"radius": np.arange(r_max + 1), "cumulative_fraction": np.cumsum(mass) / total})


def mass_radius(matrix, fraction: float) -> int | None:
    """Smallest integer radius holding at least ``fraction`` of the mass (None without mass)."""
    prof = radial_profile(matrix)
    if prof.empty:
        return None
    hit = np.nonzero(prof["cumulative_fraction"].to_numpy() >= fraction - 1e-12)[0]
    return int(prof["radius"].iloc[hit[0]])


def centre_of_mass_offset(matrix) -> tuple[float, float] | None:
    """(rows, columns) offset of the centre of mass from ``(H // 2, W // 2)`` in pixels."""
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    ci, cj = _centre(m)
    rows = (m.sum(1) * np.arange(m.shape[0])).sum() / total
    cols = (m.sum(0) * np.arange(m.shape[1])).sum() / total
    return float(rows - ci), float(cols - cj)


def anisotropy(matrix) -> float | None:
    """``(sx - sy) / (sx + sy)`` of the RMS horizontal and vertical spread about the centre."""
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    ci, cj = _centre(m)
    sy = np.sqrt((m.sum(1) * (np.arange(m.shape[0]) - ci) ** 2).sum() / total)
    sx = np.sqrt((m.sum(0) * (np.arange(m.shape[1]) - cj) ** 2).sum() / total)
    return 0.0 if sx + sy == 0 else float((sx - sy) / (sx + sy))


def axis_mass_fractions(matrix) -> tuple[float, float] | None:
    """Fractions of the mass on the centre row and on the centre column."""
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    ci, cj = _centre(m)
    return float(m[ci].sum() / total), float(m[:, cj].sum() / total)


def dead_fraction(matrix, threshold: float = DEAD_THRESHOLD) -> float:
    """Share of pixels with a value at most ``threshold`` times the maximum (1.0 if all zero)."""
    m = _check(matrix)
    top = m.max()
    if top <= 0:
        return 1.0
    return float(np.mean(m <= threshold * top))


def erf_metrics(matrix) -> dict:
    """All metrics as one flat dict (one CSV row per model)."""
    m = _check(matrix)
    h, w = m.shape
    side = min(h, w)
    out: dict = {"height": h, "width": w}
    for row in replknet_squares(m).itertuples():
        out[f"square_side_t{row.threshold}"] = row.side
        out[f"square_area_t{row.threshold}"] = row.area_ratio
    for frac in (0.5, 0.9):
        r = mass_radius(m, frac)
        key = f"r{int(frac * 100)}"
        out[f"{key}_px"] = r
        out[f"{key}_rel"] = None if r is None else r / side
    com = centre_of_mass_offset(m)
    out["com_offset_row_px"] = None if com is None else com[0]
    out["com_offset_col_px"] = None if com is None else com[1]
    out["com_offset_px"] = None if com is None else float(np.hypot(*com))
    out["anisotropy"] = anisotropy(m)
    axes = axis_mass_fractions(m)
    out["centre_row_mass"] = None if axes is None else axes[0]
    out["centre_col_mass"] = None if axes is None else axes[1]
    out["dead_fraction"] = dead_fraction(m)
    return out
