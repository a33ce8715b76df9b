"""A numeric comparison of two report folders (the committed ``figures/`` and a fresh run)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["compare_reports", "RTOL", "ATOL", "ARRAY_ATOL_REL", "VOLATILE_KEYS", "TIMING_COLUMNS"]

RTOL = 1e-4
ATOL = 1e-6
# Arrays (raw ERF matrices, kernel maps) also get an absolute tolerance of this fraction of
# their largest magnitude: float32 gradients summed over a whole image differ in their last
# bits between CPUs and thread counts (about 4e-6 of the maximum for the quick ERFs, 1 vs 2
# threads), which elementwise rtol/atol alone would flag in the near-zero tail.
ARRAY_ATOL_REL = 1e-4
# JSON keys whose values depend on the machine, the run or the install location, not on the
# analysis: never compared (their presence is).
VOLATILE_KEYS = frozenset(
    {
        "seconds",
        "seconds_per_image",
        "total_seconds",
        "command",
        "versions",
        "device_description",
        "threads",
        "images_used",
        "images_skipped",
        "images_source",
        "images",
        "created",
        "fast_paths",  # which fast paths ran depends on the machine (CPU features, CUDA)
        "monotonicity_violations",  # found in the timings, which depend on the machine
    }
)
# runtime.csv columns that hold timings: compared for presence only.
TIMING_COLUMNS = frozenset({"median_ms", "min_ms", "p10_ms", "p90_ms", "spread", "repeats"})
DATA_SUFFIXES = (".csv", ".json", ".npy", ".npz")
# an npz member holding a JSON record as uint8 bytes: compared as JSON (volatile keys skipped)
JSON_ARRAY = "meta"


def _close(a, b, rtol: float, atol: float) -> bool:
    return bool(
        np.allclose(
            np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol, equal_nan=True
        )
    )


def _compare_json(a, b, where: str, rtol: float, atol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(
                f"{where}: keys differ (only committed: {sorted(set(a) - set(b))}, only new: {sorted(set(b) - set(a))})"
            )
        for k in sorted(set(a) & set(b)):
            if k not in VOLATILE_KEYS:
                _compare_json(a[k], b[k], f"{where}.{k}", rtol, atol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items committed, {len(b)} new")
        for i, (x, y) in enumerate(zip(a, b)):
            _compare_json(x, y, f"{where}[{i}]", rtol, atol, out)
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        if a != b:
            out.append(f"{where}: committed {a!r}, new {b!r}")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not _close(a, b, rtol, atol):
            out.append(f"{where}: committed {a!r}, new {b!r}")
    elif a != b:
        out.append(f"{where}: committed {a!r}, new {b!r}")


def _compare_frames(
    a: pd.DataFrame, b: pd.DataFrame, where: str, rtol: float, atol: float, skip: Iterable[str], out: list[str]
) -> None:
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        out.append(
            f"{where}: columns/shape differ (committed {list(a.columns)} {a.shape}, new {list(b.columns)} {b.shape})"
        )
        return
    for col in a.columns:
        if col in skip:
            continue
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xa, ya = x.to_numpy(dtype=np.float64, na_value=np.nan), y.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isclose(xa, ya, rtol=rtol, atol=atol, equal_nan=True)
        else:
            bad = (x.astype(str) != y.astype(str)).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            out.append(
                f"{where}: column {col!r} differs in {int(bad.sum())} row(s), first row {i}: "
                f"committed {x.iloc[i]!r}, new {y.iloc[i]!r}"
            )


def _compare_arrays(a: np.ndarray, b: np.ndarray, where: str, rtol: float, atol: float, out: list[str]) -> None:
    if a.shape != b.shape:
        out.append(f"{where}: shape committed {a.shape}, new {b.shape}")
    elif a.dtype.kind in "fcib" and b.dtype.kind in "fcib":
        scale = float(np.nanmax(np.abs(a))) if a.size and not np.all(np.isnan(a)) else 0.0
        if not _close(a, b, rtol, max(atol, ARRAY_ATOL_REL * scale)):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            out.append(f"{where}: values differ (max abs difference {np.nanmax(diff):.3g})")
    elif not np.array_equal(a, b):
        out.append(f"{where}: committed {a!r}, new {b!r}")


def compare_reports(committed: Path, fresh: Path, rtol: float = RTOL, atol: float = ATOL) -> list[str]:
    """Differences between two report folders, one line each (empty: they agree).

    Every file must exist in both (figures included). Data files (CSV, JSON, npy, npz) are
    compared by value: numbers within ``rtol``/``atol`` (``numpy.isclose``; for npy/npz arrays
    ``atol`` is at least :data:`ARRAY_ATOL_REL` times the array's largest magnitude), text exactly;
    :data:`VOLATILE_KEYS` of JSON files and the timing columns of ``runtime.csv`` only for
    their presence, since they depend on the machine."""
    committed, fresh = Path(committed), Path(fresh)
    files_a = {p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file()}
    files_b = {p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()}
    out: list[str] = []
    for name in sorted(files_a - files_b):
        out.append(f"{name}: committed but not produced any more")
    for name in sorted(files_b - files_a):
        out.append(f"{name}: produced but not committed")
    for name in sorted(files_a & files_b):
        a, b = committed / name, fresh / name
        if name.endswith(".csv"):
            skip = TIMING_COLUMNS if Path(name).name == "runtime.csv" else ()
            _compare_frames(pd.read_csv(a), pd.read_csv(b), name, rtol, atol, skip, out)
        elif name.endswith(".json"):
            _compare_json(json.loads(a.read_text()), json.loads(b.read_text()), name, rtol, atol, out)
        elif name.endswith(".npy"):
            _compare_arrays(np.load(a), np.load(b), name, rtol, atol, out)
        elif name.endswith(".npz"):
            za, zb = np.load(a), np.load(b)
            if set(za.files) != set(zb.files):
                out.append(f"{name}: arrays differ (committed {sorted(za.files)}, new {sorted(zb.files)})")
            for key in sorted(set(za.files) & set(zb.files)):
                if key == JSON_ARRAY and za[key].dtype == np.uint8:  # a JSON record stored as bytes
                    record_a, record_b = (json.loads(z[key].tobytes()) for z in (za, zb))
                    _compare_json(record_a, record_b, f"{name}[{key}]", rtol, atol, out)
                else:
                    _compare_arrays(za[key], zb[key], f"{name}[{key}]", rtol, atol, out)
    return out
