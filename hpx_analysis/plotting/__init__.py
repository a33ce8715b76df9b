"""Figures: each function draws into given matplotlib axes (or a new figure) and returns the figure.

The plot functions load on first use, so that :mod:`hpx_analysis.plotting.labels` (the short
labels that tables share with the figures) imports without matplotlib."""

from __future__ import annotations

import importlib

__all__ = ["plot_erf", "plot_kernels", "plot_coverage", "plot_truncation", "plot_runtime"]

_MODULES = {
    "plot_erf": ".erf",
    "plot_kernels": ".kernels",
    "plot_coverage": ".coverage",
    "plot_truncation": ".truncation",
    "plot_runtime": ".runtime",
}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
