"""``report.json``: the settings, models, weights, images, device, versions and times of a report."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["versions", "write_manifest"]


def versions() -> dict:
    import timm
    import torch

    from .. import __version__

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "hpx_analysis": __version__}


def write_manifest(out: Path, manifest: dict) -> Path:
    path = Path(out) / "report.json"
    path.write_text(json.dumps(manifest, indent=1, default=str))
    return path
