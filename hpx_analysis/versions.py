"""The versions of the toolbench and the libraries it computes with, recorded in every output."""

from __future__ import annotations

import platform

__all__ = ["versions"]


def versions() -> dict[str, str]:
    """``{"hpx_analysis": ..., "python": ..., "torch": ..., ...}`` for the JSON records."""
    import captum
    import numpy as np
    import pandas as pd
    import timm
    import torch

    from . import __version__

    return {
        "hpx_analysis": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "captum": captum.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
