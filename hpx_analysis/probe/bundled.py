"""The trained probe checkpoints that ship inside the package (``hpx_analysis/probe/weights``).

``probes.json`` records, per model, the training settings, steps, seconds, the snapshot steps
and the test accuracies reached (per distance bin on the full fixed test split, and overall on
its first block, which the tests recompute).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

__all__ = ["WEIGHTS_DIR", "bundled_path", "bundled_record", "bundled_models", "snapshot_paths", "bundle_probe"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RECORD = WEIGHTS_DIR / "probes.json"


@lru_cache(maxsize=1)
def _records() -> dict:
    if not RECORD.is_file():
        return {}
    return json.loads(RECORD.read_text())


def bundled_record(name: str) -> dict | None:
    """What ``probes.json`` records for a model.

    Args:
        name: the canonical model name.

    Returns:
        dict | None: its record, or None.
    """
    return _records().get(name)


def bundled_path(name: str) -> Path | None:
    """The bundled final checkpoint of a model.

    Args:
        name: the canonical model name.

    Returns:
        Path | None: the checkpoint, or None when none ships.
    """
    path = WEIGHTS_DIR / f"{name}.safetensors"
    return path if path.is_file() and bundled_record(name) is not None else None


def bundled_models() -> list[str]:
    """The probe models with a bundled checkpoint and record.

    Returns:
        list[str]: canonical names, sorted.
    """
    return sorted(n for n in _records() if bundled_path(n) is not None)


def snapshot_paths(name: str) -> dict[int, Path]:
    """The bundled snapshots of a model.

    Args:
        name: the canonical model name.

    Returns:
        dict[int, Path]: step -> checkpoint, the final one included.
    """
    rec = bundled_record(name) or {}
    out = {int(s): WEIGHTS_DIR / f"{name}_step{s}.safetensors" for s in rec.get("snapshots", [])}
    if bundled_path(name) is not None:
        out[int(rec["steps"])] = bundled_path(name)
    return {s: p for s, p in sorted(out.items()) if p.is_file()}


def bundle_probe(name: str, checkpoints: Iterable[Path], train_log: Path, entry: dict) -> Path:
    """Install a trained probe as the package's bundled weights.

    Args:
        name: the probe model's canonical name.
        checkpoints: the final checkpoint and the snapshots, copied as they are named.
        train_log: its ``train_log.csv``, copied as ``<name>_train_log.csv``.
        entry: its record, written into ``probes.json`` under ``name``.

    Returns:
        Path: the bundled weights folder.
    """
    from ..io.output import atomic_file

    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    copies = {Path(path): WEIGHTS_DIR / Path(path).name for path in checkpoints}
    copies[Path(train_log)] = WEIGHTS_DIR / f"{name}_train_log.csv"
    for source, target in copies.items():
        with atomic_file(target) as tmp:
            shutil.copyfile(source, tmp)
    records = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    records[name] = entry
    with atomic_file(RECORD) as tmp:
        tmp.write_text(json.dumps(dict(sorted(records.items())), indent=1) + "\n")
    _records.cache_clear()
    return WEIGHTS_DIR
