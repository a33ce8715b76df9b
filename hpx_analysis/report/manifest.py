"""``report.json``: the settings, models, weights, images, device, versions and times of a report."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_manifest"]


def write_manifest(out: Path, manifest: dict) -> Path:
    path = Path(out) / "report.json"
    path.write_text(json.dumps(manifest, indent=1, default=str))
    return path
