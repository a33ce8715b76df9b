"""Confidence intervals of probe accuracies and the measured reach built on them.

Accuracies are binomial proportions (``k`` correct of ``n``); their 95 % intervals are Wilson
score intervals, which stay inside ``[0, 1]`` and keep their coverage at 0 % and 100 %, where
the probes' accuracies sit.

The *measured reach* of a model is read from its accuracy against distance ``d``: the largest
``d`` up to which the accuracy at every distance stays above ``level`` (by default halfway
between chance and 100 %: 62.5 % for four classes). It comes with an interval from the same
rule applied to the Wilson bounds: its lower end uses the lower bounds (reach established at
95 % per distance), its upper end the upper bounds (the distances not yet shown to fall below
the level). With 96 images per distance a probe at chance has an upper bound near 35 % and one
at 100 % a lower bound near 96 %, so sampling noise alone does not move the reach across the
level.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["Z95", "wilson_interval", "reach_level", "measured_reach"]

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson_interval(correct, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of the proportion ``correct / n``.

    ``centre = (p + z^2 / 2n) / (1 + z^2 / n)``, ``half = z / (1 + z^2 / n) *
    sqrt(p (1 - p) / n + z^2 / 4n^2)``.

    Args:
        correct: numbers correct (scalar or array).
        n: numbers of trials, same shape (``n = 0`` gives NaN).
        z: the normal quantile (95 % by default).

    Returns:
        ``(low, high)`` arrays of the shape of ``correct``, within ``[0, 1]``.
    """
    k = np.asarray(correct, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def reach_level(num_classes: int) -> float:
    """The accuracy level of the measured reach: halfway between chance and 100 %.

    Args:
        num_classes: classes of the task.

    Returns:
        ``(1 + 1 / num_classes) / 2``.
    """
    return 0.5 * (1.0 + 1.0 / num_classes)


def _last_contiguous(distances: np.ndarray, above: np.ndarray) -> float:
    """The largest distance before the first ``False`` (NaN when the first is ``False``)."""
    if above.all():
        return float(distances[-1])
    first_fail = int(np.argmin(above))
    return float(distances[first_fail - 1]) if first_fail else math.nan


def measured_reach(table: pd.DataFrame, level: float) -> dict:
    """Measured reach of one model from its per-distance table.

    Args:
        table: one row per distance with ``distance_px``, ``accuracy`` (fraction), ``ci_low``
            and ``ci_high`` (as written by the probe evaluation).
        level: the accuracy the model must stay above (:func:`reach_level`).

    Returns:
        ``{"level", "reach_px", "reach_low_px", "reach_high_px", "saturated"}``: the reach from
        the accuracies, its interval from the Wilson lower and upper bounds (NaN where even
        the smallest distance fails) and whether it is the largest distance tested (the true
        reach may lie beyond).
    """
    t = table.sort_values("distance_px")
    d = t.distance_px.to_numpy()
    reach = _last_contiguous(d, t.accuracy.to_numpy() > level)
    return {
        "level": float(level),
        "reach_px": reach,
        "reach_low_px": _last_contiguous(d, t.ci_low.to_numpy() > level),
        "reach_high_px": _last_contiguous(d, t.ci_high.to_numpy() > level),
        "saturated": bool(reach == d[-1]),
    }
