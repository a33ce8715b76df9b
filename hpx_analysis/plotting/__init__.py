"""Figures: each function draws into given matplotlib axes (or a new figure) and returns the figure."""

from .coverage import plot_coverage
from .erf import plot_erf
from .kernels import plot_kernels
from .runtime import plot_runtime
from .truncation import plot_truncation

__all__ = ["plot_erf", "plot_kernels", "plot_coverage", "plot_truncation", "plot_runtime"]
