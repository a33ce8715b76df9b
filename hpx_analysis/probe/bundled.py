"""The trained probe checkpoints that ship inside the package (``hpx_analysis/probe/weights``).

``probes.json`` records, per model, the training settings, steps, seconds, the snapshot steps
and the test accuracies reached (per distance bin on the full fixed test split, and overall on
its first block, which the tests recompute).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

__all__ = ["WEIGHTS_DIR", "bundled_path", "bundled_record", "bundled_models", "snapshot_paths"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RECORD = WEIGHTS_DIR / "probes.json"


@lru_cache(maxsize=1)
def _records() -> dict:
    if not RECORD.is_file():
        return {}
    return json.loads(RECORD.read_text())


def bundled_record(name: str) -> dict | None:
    """What ``probes.json`` records for ``name`` (canonical name), or None."""
    return _records().get(name)


def bundled_path(name: str) -> Path | None:
    """The bundled final checkpoint of ``name``, or None when none ships."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path if path.is_file() and bundled_record(name) is not None else None


def bundled_models() -> list[str]:
    return sorted(n for n in _records() if bundled_path(n) is not None)


def snapshot_paths(name: str) -> dict[int, Path]:
    """``{step: path}`` of the bundled snapshots of ``name`` (the final checkpoint included)."""
    rec = bundled_record(name) or {}
    out = {int(s): WEIGHTS_DIR / f"{name}_step{s}.safetensors" for s in rec.get("snapshots", [])}
    if bundled_path(name) is not None:
        out[int(rec["steps"])] = bundled_path(name)
    return {s: p for s, p in sorted(out.items()) if p.is_file()}
