"""The running state of an ERF accumulation: float64 sums keyed by image, saved and resumed.

An :class:`ErfAccumulator` holds the float64 sum of the per-image contribution maps, the
number of images in that sum, which images were used (by key: the image path, or
``tensor:<i>`` for in-memory tensors) and which were skipped (with the reason), and the
count of non-finite gradient values seen. Keys make resuming safe: an image whose key is
already recorded is neither recomputed nor counted again.

On disk a state is two files next to the outputs: ``<stem>.npz`` (the float64 sum) and
``<stem>.json`` (counts, keys, settings). Both are written to a temporary name first and
then renamed, so an interruption never leaves a half-written state behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ErfAccumulator", "ErfStateError"]

_FORMAT_VERSION = 1


class ErfStateError(ValueError):
    """A saved state cannot be used (unreadable, or made with other settings)."""


@dataclass
class ErfAccumulator:
    """Float64 sum of per-image contribution maps plus bookkeeping.

    ``settings`` describes what is being accumulated (model, weights, size, method, ...);
    :meth:`merge` and resuming refuse states whose settings differ.
    """

    settings: dict = field(default_factory=dict)
    total: np.ndarray | None = None
    used: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    nonfinite_values: int = 0
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.used)

    def done_keys(self) -> set[str]:
        """Keys of every image already handled (used or skipped)."""
        return set(self.used) | {s["key"] for s in self.skipped}

    def add(self, key: str, contribution: np.ndarray) -> None:
        """Add one image's contribution map (converted to float64)."""
        self.add_sum([key], contribution)

    def add_sum(self, keys: Sequence[str], contribution_sum: np.ndarray) -> None:
        """Add the sum of the contribution maps of the images ``keys`` (converted to float64)."""
        keys = list(keys)
        if not keys:
            raise ErfStateError("a contribution sum needs the keys of the images it holds")
        done = self.done_keys()
        for i, key in enumerate(keys):
            if key in done or key in keys[:i]:
                raise ErfStateError(f"image {key!r} is already in the accumulation")
        c = np.asarray(contribution_sum, dtype=np.float64)
        if self.total is None:
            self.total = np.zeros_like(c)
        elif c.shape != self.total.shape:
            raise ErfStateError(f"contribution of shape {c.shape} does not match the accumulated {self.total.shape}")
        self.total += c
        self.used.extend(keys)

    def skip(self, key: str, reason: str, nonfinite_values: int = 0) -> None:
        """Record an image that is not part of the mean, with the reason."""
        if key in self.done_keys():
            raise ErfStateError(f"image {key!r} is already in the accumulation")
        self.skipped.append({"key": key, "reason": reason})
        self.nonfinite_values += int(nonfinite_values)

    def mean(self) -> np.ndarray:
        if self.total is None or self.count == 0:
            raise ErfStateError("no image contributed to the accumulation")
        return self.total / self.count

    def merge(self, other: ErfAccumulator) -> ErfAccumulator:
        """A new accumulator holding both (their image sets must be disjoint)."""
        if self.settings and other.settings and self.settings != other.settings:
            raise ErfStateError(
                f"cannot merge accumulations with different settings: {self.settings} vs {other.settings}"
            )
        overlap = self.done_keys() & other.done_keys()
        if overlap:
            raise ErfStateError(f"accumulations overlap in {len(overlap)} image(s), e.g. {sorted(overlap)[0]!r}")
        if self.total is None:
            total = None if other.total is None else other.total.copy()
        elif other.total is None:
            total = self.total.copy()
        else:
            if self.total.shape != other.total.shape:
                raise ErfStateError(f"cannot merge maps of shapes {self.total.shape} and {other.total.shape}")
            total = self.total + other.total
        return ErfAccumulator(
            settings=dict(self.settings or other.settings),
            total=total,
            used=self.used + other.used,
            skipped=self.skipped + other.skipped,
            nonfinite_values=self.nonfinite_values + other.nonfinite_values,
            seconds=self.seconds + other.seconds,
        )

    # -- files ----------------------------------------------------------------------
    def save(self, path_stem: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<stem>.npz`` and ``<stem>.json`` atomically; returns both paths."""
        stem = Path(path_stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        npz_path, json_path = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
        tmp_npz = npz_path.with_name(npz_path.name + ".tmp.npz")
        total = self.total if self.total is not None else np.zeros((0, 0), dtype=np.float64)
        np.savez(tmp_npz, total=total)
        meta = {
            "format_version": _FORMAT_VERSION,
            "settings": self.settings,
            "used": self.used,
            "skipped": self.skipped,
            "nonfinite_values": self.nonfinite_values,
            "seconds": self.seconds,
        }
        tmp_json = json_path.with_name(json_path.name + ".tmp")
        tmp_json.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_npz, npz_path)
        os.replace(tmp_json, json_path)
        return npz_path, json_path

    @classmethod
    def load(cls, path_stem: str | os.PathLike) -> ErfAccumulator:
        stem = Path(path_stem)
        npz_path, json_path = stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")
        try:
            meta = json.loads(json_path.read_text())
            with np.load(npz_path, allow_pickle=False) as data:
                total = np.array(data["total"], dtype=np.float64)
        except (OSError, ValueError, KeyError) as exc:
            raise ErfStateError(f"cannot read the saved ERF state {stem}: {exc}") from exc
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ErfStateError(f"saved ERF state {stem} has an unknown format version {meta.get('format_version')}")
        acc = cls(
            settings=meta["settings"],
            total=None if total.size == 0 else total,
            used=list(meta["used"]),
            skipped=list(meta["skipped"]),
            nonfinite_values=int(meta["nonfinite_values"]),
            seconds=float(meta["seconds"]),
        )
        if (acc.total is None) != (acc.count == 0):
            raise ErfStateError(f"saved ERF state {stem} is inconsistent (sum and image list disagree)")
        return acc

    @staticmethod
    def exists(path_stem: str | os.PathLike) -> bool:
        stem = Path(path_stem)
        return stem.with_name(stem.name + ".json").exists() and stem.with_name(stem.name + ".npz").exists()

    @staticmethod
    def remove(path_stem: str | os.PathLike) -> None:
        stem = Path(path_stem)
        for suffix in (".npz", ".json"):
            stem.with_name(stem.name + suffix).unlink(missing_ok=True)
