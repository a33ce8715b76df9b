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

The radial, centre-of-mass, anisotropy and axis metrics take an optional ``centre`` (row,
column in pixels, may be fractional): the output unit's own position in the input (see
:func:`~hpx_analysis.erf.geometry.unit_position`); without it, the image centre
``(H // 2, W // 2)`` as before. :func:`erf_metrics` with ``full=True`` adds:

- the unit's position (``centre_row_px``, ``centre_col_px``) and the metrics around it;
- :func:`gaussian_fit`: a 2D Gaussian with offset fitted to the raw map by least squares
  (``gauss_sigma_x_px``, ``gauss_sigma_y_px``, ``gauss_rho``, ``gauss_r2``, and its mean);
- ``erf90_area_px``: the fewest pixels holding 90% of the mass; with the theoretical
  receptive field's pixel count (``trf_px``) their ratio ``erf_trf_ratio``;
- ``degenerate``: True when more than ``DEGENERATE_FRACTION`` (95%) of the pixels are
  near zero (``dead_fraction``), as for random-init ResNets and ConvNeXts, whose
  zero-initialised residual branches leave a stem-sized patch.
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
    "gaussian_fit",
    "area_for_mass",
    "DEGENERATE_FRACTION",
    "degenerate_warning",
    "R50_PX",
    "R90_PX",
    "R50_REL",
    "R90_REL",
    "COM_OFFSET_PX",
    "ANISOTROPY",
    "DEAD_FRACTION",
    "SQUARE_SIDE_T02",
    "DEGENERATE",
    "square_key",
]

DEGENERATE_FRACTION = 0.95

THRESHOLDS = (0.2, 0.3, 0.5, 0.99)
DEAD_THRESHOLD = 1e-3

# the names of the metrics in records and tables (erf_metrics.csv); the others are listed
# in erf_metrics below
R50_PX, R90_PX = "r50_px", "r90_px"
R50_REL, R90_REL = "r50_rel", "r90_rel"
COM_OFFSET_PX = "com_offset_px"
ANISOTROPY = "anisotropy"
DEAD_FRACTION = "dead_fraction"
DEGENERATE = "degenerate"


def square_key(threshold: float, kind: str = "side") -> str:
    """The name of RepLKNet's square metric at ``threshold``.

    Args:
        threshold: one of :data:`THRESHOLDS`.
        kind: ``"side"`` (the side in pixels) or ``"area"`` (the area ratio).

    Returns:
        str: ``square_side_t0.2``, ``square_area_t0.2``, ...
    """
    return f"square_{kind}_t{threshold}"


SQUARE_SIDE_T02 = square_key(0.2)


def _check(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"an ERF matrix must be a non-empty 2D array, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("the ERF matrix has non-finite values")
    if np.any(m < 0):
        raise ValueError("the ERF matrix has negative values; contribution scores are non-negative")
    return m


def _centre(m: np.ndarray, centre=None) -> tuple[float, float]:
    return (m.shape[0] // 2, m.shape[1] // 2) if centre is None else (float(centre[0]), float(centre[1]))


def replknet_scale(matrix) -> np.ndarray:
    """``log10(x + 1)`` divided by its maximum (all zeros stay zeros).

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).

    Returns:
        np.ndarray: the scaled map in [0, 1].
    """
    s = np.log10(_check(matrix) + 1.0)
    top = s.max()
    return s / top if top > 0 else s


def replknet_squares(matrix, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Per threshold: side length and area ratio of the smallest qualifying centred square.

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        thresholds: the mass fractions.

    Returns:
        pd.DataFrame: ``threshold``, ``side``, ``area_ratio`` per threshold.
    """
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


def _distances(m: np.ndarray, centre=None) -> np.ndarray:
    ci, cj = _centre(m, centre)
    rows = np.arange(m.shape[0])[:, None] - ci
    cols = np.arange(m.shape[1])[None, :] - cj
    return np.sqrt(rows**2 + cols**2)


def radial_profile(matrix, centre=None) -> pd.DataFrame:
    """Cumulative mass fraction within distance ``radius`` of the centre (integer radii from
    0 to the farthest pixel). Empty when the matrix has no mass.

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        centre: (row, column) in pixels; None: ``(H // 2, W // 2)``.

    Returns:
        pd.DataFrame: ``radius`` and ``cumulative_fraction``.
    """
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return pd.DataFrame({"radius": [], "cumulative_fraction": []})
    d = _distances(m, centre)
    r_max = int(np.ceil(d.max()))
    radius_bin = np.ceil(d - 1e-9).astype(int)  # pixel at distance d counts from radius ceil(d)
    mass = np.bincount(radius_bin.ravel(), weights=m.ravel(), minlength=r_max + 1)
    return pd.DataFrame({"radius": np.arange(r_max + 1), "cumulative_fraction": np.cumsum(mass) / total})


def mass_radius(matrix, fraction: float, centre=None) -> int | None:
    """Smallest integer radius holding at least ``fraction`` of the mass (None without mass).

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        fraction: the share of the mass.
        centre: (row, column) in pixels; None: ``(H // 2, W // 2)``.

    Returns:
        int | None: the radius in pixels.
    """
    prof = radial_profile(matrix, centre)
    if prof.empty:
        return None
    hit = np.nonzero(prof["cumulative_fraction"].to_numpy() >= fraction - 1e-12)[0]
    return int(prof["radius"].iloc[hit[0]])


def centre_of_mass_offset(matrix, centre=None) -> tuple[float, float] | None:
    """(rows, columns) offset of the centre of mass from the centre in pixels.

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        centre: (row, column) in pixels; None: ``(H // 2, W // 2)``.

    Returns:
        tuple[float, float] | None: the offset (None without mass).
    """
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    ci, cj = _centre(m, centre)
    rows = (m.sum(1) * np.arange(m.shape[0])).sum() / total
    cols = (m.sum(0) * np.arange(m.shape[1])).sum() / total
    return float(rows - ci), float(cols - cj)


def anisotropy(matrix, centre=None) -> float | None:
    """``(sx - sy) / (sx + sy)`` of the RMS horizontal and vertical spread about the centre.

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        centre: (row, column) in pixels; None: ``(H // 2, W // 2)``.

    Returns:
        float | None: in [-1, 1] (None without mass).
    """
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    ci, cj = _centre(m, centre)
    sy = np.sqrt((m.sum(1) * (np.arange(m.shape[0]) - ci) ** 2).sum() / total)
    sx = np.sqrt((m.sum(0) * (np.arange(m.shape[1]) - cj) ** 2).sum() / total)
    return 0.0 if sx + sy == 0 else float((sx - sy) / (sx + sy))


def axis_mass_fractions(matrix, centre=None) -> tuple[float, float] | None:
    """Fractions of the mass on the centre row and on the centre column (the pixel row and
    column holding a fractional centre, rounded half down).

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        centre: (row, column) in pixels; None: ``(H // 2, W // 2)``.

    Returns:
        tuple[float, float] | None: row and column fractions (None without mass).
    """
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    ci, cj = (int(np.ceil(c - 0.5)) for c in _centre(m, centre))
    return float(m[ci].sum() / total), float(m[:, cj].sum() / total)


def dead_fraction(matrix, threshold: float = DEAD_THRESHOLD) -> float:
    """Share of pixels with a value at most ``threshold`` times the maximum (1.0 if all zero).

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        threshold: the share of the maximum below which a pixel counts as dead.

    Returns:
        float: the share of dead pixels.
    """
    m = _check(matrix)
    top = m.max()
    if top <= 0:
        return 1.0
    return float(np.mean(m <= threshold * top))


def gaussian_fit(matrix) -> dict | None:
    """Least-squares fit of ``a * exp(-q / 2) + b`` to the raw map, ``q`` the quadratic form
    of a 2D Gaussian with mean ``(mu_y, mu_x)``, standard deviations ``sigma_x`` (columns),
    ``sigma_y`` (rows) and correlation ``rho``. Returns those, ``r2`` (the coefficient of
    determination of the fit) and ``amplitude``/``offset``; None without mass or when the
    fit fails.

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).

    Returns:
        dict | None: the fitted parameters.
    """
    from scipy.optimize import least_squares

    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    top = m.max()
    z = m / top
    p = z / z.sum()
    my, mx = (p * yy).sum(), (p * xx).sum()
    sy0 = max(np.sqrt((p * (yy - my) ** 2).sum()), 0.5)
    sx0 = max(np.sqrt((p * (xx - mx) ** 2).sum()), 0.5)

    def model(theta):
        a, b, mu_y, mu_x, log_sy, log_sx, t = theta
        sy, sx, rho = np.exp(log_sy), np.exp(log_sx), np.tanh(t)
        dy, dx = (yy - mu_y) / sy, (xx - mu_x) / sx
        q = (dy**2 - 2 * rho * dy * dx + dx**2) / (1 - rho**2)
        return a * np.exp(-q / 2) + b

    start = np.array([1.0, 0.0, my, mx, np.log(sy0), np.log(sx0), 0.0])
    try:
        fit = least_squares(lambda th: (model(th) - z).ravel(), start, method="trf", max_nfev=400)
    except (ValueError, np.linalg.LinAlgError):
        return None
    a, b, mu_y, mu_x, log_sy, log_sx, t = fit.x
    resid = ((model(fit.x) - z) ** 2).sum()
    spread = ((z - z.mean()) ** 2).sum()
    return {
        "sigma_x": float(np.exp(log_sx)),
        "sigma_y": float(np.exp(log_sy)),
        "rho": float(np.tanh(t)),
        "mu_row": float(mu_y),
        "mu_col": float(mu_x),
        "r2": float(1 - resid / spread) if spread > 0 else None,
        "amplitude": float(a * top),
        "offset": float(b * top),
    }


def area_for_mass(matrix, fraction: float = 0.9) -> int | None:
    """The fewest pixels holding at least ``fraction`` of the mass (None without mass).

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        fraction: the share of the mass.

    Returns:
        int | None: the pixel count.
    """
    m = _check(matrix)
    total = m.sum()
    if total <= 0:
        return None
    cum = np.cumsum(np.sort(m.ravel())[::-1]) / total
    return int(np.searchsorted(cum, fraction - 1e-12) + 1)


def degenerate_warning(metrics: dict, name: str = "the ERF") -> str | None:
    """A one-line warning when ``metrics`` (of :func:`erf_metrics`) describe a degenerate map.

    Args:
        metrics: the metrics of one map.
        name: how the map is named in the warning.

    Returns:
        str | None: the warning, or None for a map that is not degenerate.
    """
    dead = metrics.get(DEAD_FRACTION)
    if dead is None or dead <= DEGENERATE_FRACTION:
        return None
    return (
        f"{name} is degenerate: {dead:.1%} of its pixels are near zero (<= {DEAD_THRESHOLD:g} of the maximum); "
        "zero-initialised residual branches of random-init models do this"
    )


def erf_metrics(matrix, centre=None, full: bool = False, trf_pixels: int | None = None) -> dict:
    """All metrics as one flat dict (one CSV row per model). ``centre``: the output unit's
    position in input pixels (default: the image centre). ``full``: also the unit position,
    the Gaussian fit, the 90% area, the ERF/TRF ratio (with ``trf_pixels``) and the
    degenerate flag (see the module docstring).

    Args:
        matrix: the raw ERF matrix (H x W, non-negative).
        centre: the unit's (row, column) in input pixels; None: the image centre.
        full: also the extra metrics.
        trf_pixels: the theoretical receptive field's pixel count (for ``erf_trf_ratio``).

    Returns:
        dict: metric name -> value (names such as :data:`R50_PX`, :data:`DEAD_FRACTION`).
    """
    m = _check(matrix)
    h, w = m.shape
    side = min(h, w)
    out: dict = {"height": h, "width": w}
    for row in replknet_squares(m).itertuples():
        out[square_key(row.threshold)] = row.side
        out[square_key(row.threshold, "area")] = row.area_ratio
    for frac, px, rel in ((0.5, R50_PX, R50_REL), (0.9, R90_PX, R90_REL)):
        r = mass_radius(m, frac, centre)
        out[px] = r
        out[rel] = None if r is None else r / side
    com = centre_of_mass_offset(m, centre)
    out["com_offset_row_px"] = None if com is None else com[0]
    out["com_offset_col_px"] = None if com is None else com[1]
    out[COM_OFFSET_PX] = None if com is None else float(np.hypot(*com))
    out[ANISOTROPY] = anisotropy(m, centre)
    axes = axis_mass_fractions(m, centre)
    out["centre_row_mass"] = None if axes is None else axes[0]
    out["centre_col_mass"] = None if axes is None else axes[1]
    out[DEAD_FRACTION] = dead_fraction(m)
    if not full:
        return out
    ci, cj = _centre(m, centre)
    out["centre_row_px"], out["centre_col_px"] = ci, cj
    g = gaussian_fit(m) or {}
    for key in ("sigma_x", "sigma_y", "rho", "r2", "mu_row", "mu_col"):
        out[f"gauss_{key}" + ("_px" if key.startswith(("sigma", "mu")) else "")] = g.get(key)
    area = area_for_mass(m, 0.9)
    out["erf90_area_px"] = area
    out["trf_px"] = trf_pixels
    out["erf_trf_ratio"] = None if area is None or not trf_pixels else area / trf_pixels
    out[DEGENERATE] = bool(out[DEAD_FRACTION] > DEGENERATE_FRACTION)
    return out
