"""How much the ERF varies between images: the standard-deviation map and the spread of
each metric across the per-image maps.

:class:`PerImage` collects the per-image maps of one run as they are computed (pass it as
``per_image`` to :func:`~hpx_analysis.erf.compute_erf` or
:func:`~hpx_analysis.erf.run.run_erf`, or ask for ``full_metrics`` in the settings): a float64 sum of squares for the
standard-deviation map, the metrics of every image, and, with ``keep=True``, the maps
themselves. Only the images computed in this process are seen: after ``--resume`` the
images done before the interruption, and under ``torchrun`` the other ranks' shares, are
not in it; ``count`` says how many images are. The maps are those of the protocol before
its last step (for ``bmvc``: before the normalisation to sum 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .metrics import ANISOTROPY, COM_OFFSET_PX, DEAD_FRACTION, R50_PX, R90_PX, SQUARE_SIDE_T02, erf_metrics

__all__ = ["PerImage", "SPREAD_METRICS"]

SPREAD_METRICS = (R50_PX, R90_PX, COM_OFFSET_PX, ANISOTROPY, DEAD_FRACTION, SQUARE_SIDE_T02)


class PerImage:
    """Per-image maps of one run: ``std()`` (the population standard deviation per pixel),
    ``frame()`` (one row of metrics per image) and ``spread()`` (mean, std, min and max of
    :data:`SPREAD_METRICS` across images). ``centre``: the unit's position for the metrics."""

    def __init__(self, keep: bool = False, centre=None):
        self.keep, self.centre = keep, centre
        self.keys: list[str] = []
        self.total: np.ndarray | None = None
        self.squares: np.ndarray | None = None
        self.rows: list[dict] = []
        self.maps: list[np.ndarray] = []

    @property
    def count(self) -> int:
        return len(self.keys)

    def __call__(self, keys, maps: torch.Tensor) -> None:
        batch = maps.detach().double().cpu().numpy()
        for key, m in zip(keys, batch):
            if not np.all(np.isfinite(m)):
                continue  # excluded from the mean too
            self.keys.append(key)
            self.total = m.copy() if self.total is None else self.total + m
            self.squares = m**2 if self.squares is None else self.squares + m**2
            self.rows.append({"image": key, **erf_metrics(np.maximum(m, 0), centre=self.centre)})
            if self.keep:
                self.maps.append(m)

    def std(self) -> np.ndarray | None:
        """The population standard deviation per pixel over the images seen.

        Returns:
            np.ndarray | None: the map (None before any image).
        """
        if not self.count:
            return None
        mean = self.total / self.count
        return np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))

    def frame(self) -> pd.DataFrame:
        """One row of metrics per image.

        Returns:
            pd.DataFrame: ``image`` and the metrics.
        """
        return pd.DataFrame(self.rows)

    def spread(self) -> dict:
        """Mean, standard deviation, minimum and maximum of :data:`SPREAD_METRICS` across images.

        Returns:
            dict: metric -> ``{"mean", "std", "min", "max"}``.
        """
        table = self.frame()
        out = {}
        for name in SPREAD_METRICS:
            if name in table:
                v = pd.to_numeric(table[name], errors="coerce").dropna()
                if len(v):
                    out[name] = {"mean": v.mean(), "std": v.std(ddof=0), "min": v.min(), "max": v.max()}
        return {k: {s: float(x) for s, x in v.items()} for k, v in out.items()}
