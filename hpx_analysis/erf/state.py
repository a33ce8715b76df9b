"""The running state of an ERF accumulation: float64 sums keyed by image, saved and resumed.

An :class:`ErfAccumulator` holds the float64 sum of the per-image contribution maps, the
number of images in that sum, which images were used (by key: the image path, or
``tensor:<i>`` for in-memory tensors) and which were skipped (with the reason), and the
count of non-finite gradient values seen. Keys make resuming safe: an image whose key is
already recorded is neither recomputed nor counted again.

On disk a state is one file next to the outputs, ``<stem>.npz``, holding the float64 sum
and, in the same archive, the counts, keys and settings as JSON. It is written under a
temporary name, flushed to disk and renamed over the old one, so a kill at any moment
leaves either the previous state or the new one, never a sum from one and an image list
from the other. Loading checks the file's structure and that its counts agree; a damaged or
hand-edited state raises :class:`ErfStateError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.output import atomic_write

__all__ = ["ErfAccumulator", "ErfStateError"]

_FORMAT_VERSION = 2
SUFFIX = ".npz"


class ErfStateError(ValueError):
    """A saved state cannot be used (unreadable, or made with other settings)."""


def _checksum(total: np.ndarray, meta: dict) -> str:
    """SHA-256 over the sum's bytes and every recorded field: an edited key list or sum shows."""
    digest = hashlib.sha256(np.ascontiguousarray(total, dtype=np.float64).tobytes())
    digest.update(str(total.shape).encode())
    digest.update(json.dumps({k: meta[k] for k in sorted(meta) if k != "checksum"}, sort_keys=True).encode())
    return digest.hexdigest()


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
        """Keys of every image already handled (used or skipped).

        Returns:
            set[str]: the keys.
        """
        return set(self.used) | {s["key"] for s in self.skipped}

    def add(self, key: str, contribution: np.ndarray) -> None:
        """Add one image's contribution map (converted to float64).

        Args:
            key: the image's key.
            contribution: its map.
        """
        self.add_sum([key], contribution)

    def add_sum(self, keys: Sequence[str], contribution_sum: np.ndarray) -> None:
        """Add the sum of the contribution maps of the images ``keys`` (converted to float64).

        Args:
            keys: the images' keys.
            contribution_sum: the sum of their maps.
        """
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
        """Record an image that is not part of the mean, with the reason.

        Args:
            key: the image's key.
            reason: why it is left out.
            nonfinite_values: how many non-finite values its map had.
        """
        if key in self.done_keys():
            raise ErfStateError(f"image {key!r} is already in the accumulation")
        self.skipped.append({"key": key, "reason": reason})
        self.nonfinite_values += int(nonfinite_values)

    def mean(self) -> np.ndarray:
        """The mean of the maps added so far.

        Returns:
            np.ndarray: the float64 mean map.
        """
        if self.total is None or self.count == 0:
            raise ErfStateError("no image contributed to the accumulation")
        return self.total / self.count

    def merge(self, other: ErfAccumulator) -> ErfAccumulator:
        """A new accumulator holding both (their image sets must be disjoint).

        Args:
            other: another accumulation with the same settings.

        Returns:
            ErfAccumulator: the merged accumulation.
        """
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
    @staticmethod
    def path(path_stem: str | os.PathLike) -> Path:
        """The state file of ``path_stem``: ``<stem>.npz``.

        Args:
            path_stem: the state's stem.

        Returns:
            Path: the file.
        """
        stem = Path(path_stem)
        return stem.with_name(stem.name + SUFFIX)

    def save(self, path_stem: str | os.PathLike) -> Path:
        """Write ``<stem>.npz`` (sum, keys and settings in one file) atomically; returns its path.

        The file is written under a temporary name in the same folder, flushed and renamed
        over the old state; on any error the temporary file is removed and the old state kept.

        Args:
            path_stem: the state's stem.

        Returns:
            Path: the file written.
        """
        path = self.path(path_stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        total = self.total if self.total is not None else np.zeros((0, 0), dtype=np.float64)
        meta = {
            "format_version": _FORMAT_VERSION,
            "settings": self.settings,
            "used": self.used,
            "skipped": self.skipped,
            "nonfinite_values": self.nonfinite_values,
            "seconds": self.seconds,
        }
        meta["checksum"] = _checksum(total, meta)
        meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        atomic_write(path, lambda fh: np.savez(fh, total=total, meta=meta_bytes))
        return path

    @classmethod
    def load(cls, path_stem: str | os.PathLike) -> ErfAccumulator:
        """Read a state written by :meth:`save`; raises :class:`ErfStateError` naming the file
        when it is unreadable, damaged or inconsistent.

        Args:
            path_stem: the state's stem.

        Returns:
            ErfAccumulator: the saved state.
        """
        path = cls.path(path_stem)

        def damaged(why: str) -> ErfStateError:
            return ErfStateError(f"the saved ERF state {path} is damaged ({why}); delete it or run without resuming")

        try:
            with np.load(path, allow_pickle=False) as data:
                total = np.array(data["total"], dtype=np.float64)
                meta = json.loads(bytes(np.asarray(data["meta"], dtype=np.uint8)).decode("utf-8"))
        except FileNotFoundError:
            raise ErfStateError(f"no saved ERF state at {path}") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise damaged(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(meta, dict):
            raise damaged("its record is not a JSON object")
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ErfStateError(
                f"the saved ERF state {path} has format version {meta.get('format_version')!r}, "
                f"not {_FORMAT_VERSION}; start over without resuming"
            )
        try:
            intact = meta.get("checksum") == _checksum(total, meta)
        except (TypeError, ValueError):
            intact = False
        if not intact:
            raise damaged("its checksum does not match its contents")
        used, skipped = meta.get("used"), meta.get("skipped")
        if not isinstance(used, list) or not all(isinstance(k, str) for k in used):
            raise damaged("'used' is not a list of image keys")
        if not isinstance(skipped, list) or not all(
            isinstance(s, dict) and isinstance(s.get("key"), str) and isinstance(s.get("reason"), str) for s in skipped
        ):
            raise damaged("'skipped' is not a list of {key, reason} records")
        keys = used + [s["key"] for s in skipped]
        if len(set(keys)) != len(keys):
            raise damaged("an image is listed more than once")
        if not isinstance(meta.get("settings"), dict):
            raise damaged("'settings' is missing")
        try:
            nonfinite, seconds = int(meta["nonfinite_values"]), float(meta["seconds"])
        except (KeyError, TypeError, ValueError):
            raise damaged("'nonfinite_values' or 'seconds' is missing or not a number") from None
        if (total.size == 0) != (len(used) == 0) or (total.size and total.ndim != 2):
            raise damaged(f"a sum of shape {total.shape} for {len(used)} image(s)")
        if total.size and not np.isfinite(total).all():
            raise damaged("the sum holds non-finite values")
        return cls(
            settings=meta["settings"],
            total=None if total.size == 0 else total,
            used=list(used),
            skipped=list(skipped),
            nonfinite_values=nonfinite,
            seconds=seconds,
        )

    @staticmethod
    def exists(path_stem: str | os.PathLike) -> bool:
        """Whether a state was saved under ``path_stem``.

        Args:
            path_stem: the state's stem.

        Returns:
            bool: whether its file exists.
        """
        return ErfAccumulator.path(path_stem).is_file()

    @staticmethod
    def remove(path_stem: str | os.PathLike) -> None:
        """Remove the state file and any temporary file a killed save left behind.

        Args:
            path_stem: the state's stem.
        """
        path = ErfAccumulator.path(path_stem)
        path.unlink(missing_ok=True)
        for tmp in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else ():
            tmp.unlink(missing_ok=True)
