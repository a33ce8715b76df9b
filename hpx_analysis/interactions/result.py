"""The result of an interaction analysis of one model: per block the mean interaction
distance (per image), the maps of the query points and, optionally, the rollout maps.

Files: ``interactions_<label>.npz`` holds the maps (per block and query: the mean over
images, and the first image's map), the sampled queries with their mean distances, the
rollout maps and a JSON ``meta`` entry with everything else; :meth:`InteractionResult.load`
reads it back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.output import atomic_write

__all__ = ["BlockInteractions", "InteractionResult", "interactions_frame", "FRAME_COLUMNS"]

FRAME_COLUMNS = (
    "model",
    "weights",
    "stage",
    "block",
    "mixer",
    "mean_distance_px",
    "std_distance_px",
    "images",
    "queries",
)
_ARRAYS = ("maps", "first_maps")


@dataclass
class BlockInteractions:
    """One analysed block.

    Args:
        stage, block: where it is; ``mixer``: its token mixer's class name.
        grid: ``(h, w)`` token grid.
        distances_px: mean interaction distance on each image (input pixels).
        queries: query tokens per image that the distance averages over.
        maps: query name -> ``(h, w)`` interaction map ``r(i, .)``, mean over images.
        first_maps: the same on the first image.
        query_tokens: query name -> ``(row, column)`` of its token on the grid.
        sample: raster indices of the sampled query tokens.
        query_distance_px: mean over images of each sampled query's distance.
    """

    stage: int
    block: int
    mixer: str
    grid: tuple[int, int]
    distances_px: list[float]
    queries: int
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    first_maps: dict[str, np.ndarray] = field(default_factory=dict)
    query_tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    query_distance_px: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def name(self) -> str:
        """``"STAGE.BLOCK"``."""
        return f"{self.stage}.{self.block}"

    @property
    def mean_distance_px(self) -> float:
        """Mean over images of the mean interaction distance."""
        return float(np.mean(self.distances_px)) if self.distances_px else float("nan")

    @property
    def std_distance_px(self) -> float:
        """Standard deviation over images (population; 0 for one image)."""
        return float(np.std(self.distances_px)) if self.distances_px else float("nan")


@dataclass
class InteractionResult:
    """Interaction maps and distances of one model (see the module docstring).

    Args:
        model: canonical model name; ``label``: its name in file names; ``weights``: the
            weights used.
        settings: the settings' record; ``size``: input ``(H, W)`` in pixels.
        blocks: the analysed blocks in forward order.
        skipped: ``{"stage", "block", "mixer", "reason"}`` for each block left out.
        images: the images used (paths or descriptions).
        rollout: query name -> ``(H, W)`` input-pixel rollout map (a heuristic), or None.
        notes: remarks for the user (e.g. prefix tokens left out).
        seconds: compute time.
    """

    model: str
    label: str
    weights: str
    settings: dict
    size: tuple[int, int]
    blocks: list[BlockInteractions]
    skipped: list[dict] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    rollout: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per analysed block.

        Returns:
            pandas.DataFrame: columns ``FRAME_COLUMNS`` plus ``label``.
        """
        rows = [
            {
                "model": self.model,
                "weights": self.weights,
                "stage": b.stage,
                "block": b.block,
                "mixer": b.mixer,
                "mean_distance_px": b.mean_distance_px,
                "std_distance_px": b.std_distance_px,
                "images": len(b.distances_px),
                "queries": b.queries,
                "label": self.label,
            }
            for b in self.blocks
        ]
        return pd.DataFrame(rows, columns=[*FRAME_COLUMNS, "label"])

    def record(self) -> dict:
        """The JSON-ready record of everything but the arrays."""
        blocks = [
            {k: v for k, v in asdict(b).items() if k not in (*_ARRAYS, "sample", "query_distance_px")}
            for b in self.blocks
        ]
        meta = {k: v for k, v in asdict(self).items() if k not in ("blocks", "rollout")}
        return {**meta, "blocks": blocks, "rollout_queries": sorted(self.rollout or {})}

    def save(self, out_dir: str | Path) -> Path:
        """Write ``interactions_<label>.npz`` into ``out_dir`` (atomically).

        Args:
            out_dir: the folder.

        Returns:
            Path: the file written.
        """
        arrays: dict[str, np.ndarray] = {}
        for b in self.blocks:
            for kind in _ARRAYS:
                for query, array in getattr(b, kind).items():
                    arrays[f"{b.name}/{kind}/{query}"] = np.asarray(array, dtype=np.float32)
            arrays[f"{b.name}/sample"] = np.asarray(b.sample, dtype=np.int64)
            arrays[f"{b.name}/query_distance_px"] = np.asarray(b.query_distance_px, dtype=np.float64)
        for query, array in (self.rollout or {}).items():
            arrays[f"rollout/{query}"] = np.asarray(array, dtype=np.float32)
        meta = np.frombuffer(json.dumps(self.record()).encode("utf-8"), dtype=np.uint8)
        path = Path(out_dir) / f"interactions_{self.label}.npz"
        return atomic_write(path, lambda fh: np.savez_compressed(fh, meta=meta, **arrays))

    @classmethod
    def load(cls, path: str | Path, label: str | None = None) -> InteractionResult:
        """Read a result written by :meth:`save`.

        Args:
            path: the ``.npz`` file, or its folder together with ``label``.
            label: the run label when ``path`` is a folder.

        Returns:
            InteractionResult: the result.
        """
        path = Path(path)
        if path.is_dir():
            if label is None:
                raise ValueError(f"{path} is a folder: give the run label of the file to load")
            path = path / f"interactions_{label}.npz"
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            arrays = {k: data[k] for k in data.files if k != "meta"}
        blocks = []
        for rec in meta.pop("blocks"):
            name = f"{rec['stage']}.{rec['block']}"
            rec["grid"] = tuple(rec["grid"])
            rec["query_tokens"] = {q: tuple(v) for q, v in rec["query_tokens"].items()}
            for kind in _ARRAYS:
                prefix = f"{name}/{kind}/"
                rec[kind] = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            rec["sample"] = arrays.get(f"{name}/sample", np.zeros(0, dtype=np.int64))
            rec["query_distance_px"] = arrays.get(f"{name}/query_distance_px", np.zeros(0))
            blocks.append(BlockInteractions(**rec))
        queries = meta.pop("rollout_queries")
        rollout = {q: arrays[f"rollout/{q}"] for q in queries} if queries else None
        meta["size"] = tuple(meta["size"])
        return cls(**meta, blocks=blocks, rollout=rollout)


def interactions_frame(results: list[InteractionResult]) -> pd.DataFrame:
    """The rows of several results in one table (what ``interactions.csv`` holds).

    Args:
        results: the results.

    Returns:
        pandas.DataFrame: the concatenated ``to_frame()`` tables.
    """
    frames = [r.to_frame() for r in results]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*FRAME_COLUMNS, "label"])
