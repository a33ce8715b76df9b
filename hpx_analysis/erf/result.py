"""ERF results and their files: ``erf_<model>.npy`` / ``erf_<model>.json`` per model
(:class:`ErfResult`) and ``erf_metrics.csv`` for several models (:class:`ErfComparison`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting.labels import short_weights
from .metrics import R50_PX, R90_PX, erf_metrics

__all__ = ["ErfResult", "ErfComparison", "METRICS_FILE"]

METRICS_FILE = "erf_metrics.csv"
# derived from other fields when written, dropped when read back
_DERIVED = ("num_images", "nonfinite_policy", "seconds_per_image", "metrics", "versions")
_INTEGER_COLUMNS = (R50_PX, R90_PX)


@dataclass
class ErfResult:
    """Mean contribution matrix (float64, H x W, before any scaling) and how it was made.

    ``model``, ``weights`` and ``weights_kind`` record the model it was computed for (see
    :class:`~hpx_analysis.io.weights.LoadedModel`); ``run`` holds whatever else describes the
    run (batch size, seed, command, ...) and is written into the JSON record as it is.

    The optional fields are written only when set, so a default run's files stay as they
    were: ``name`` (the run label in file names when it is not the model: a weights tag,
    a stage, a size), ``unit`` (the non-default output unit and protocol,
    :meth:`~hpx_analysis.erf.unit.ErfUnit.describe`), ``position`` (the unit's position in
    input pixels, :func:`~hpx_analysis.erf.geometry.unit_position`; the radial and
    centre-of-mass metrics are taken around it), ``trf`` (the theoretical receptive field's
    pixel count and bounding box) and ``full_metrics`` (the extra metrics of
    :func:`~hpx_analysis.erf.metrics.erf_metrics`), ``std`` (the standard-deviation map
    over images, ``erf_<label>_std.npy``), ``spread`` (each metric's spread across images,
    ``metrics_spread`` in the record) and ``per_image`` (a
    :class:`~hpx_analysis.erf.spread.PerImage` whose kept maps go to
    ``erf_<label>_per_image.npz`` and metrics to ``erf_<label>_per_image.csv``),
    ``erf_settings`` (:meth:`~hpx_analysis.erf.settings.ErfSettings.describe`) and
    ``fast_paths`` (:func:`~hpx_analysis.models.fast.fast_path_record`)."""

    matrix: np.ndarray
    used: list[str]
    skipped: list[dict]
    nonfinite_values: int
    seconds: float
    method: str
    precision: str
    input_size: tuple[int, int]
    device: str
    precision_deviation: dict | None = None
    settings: dict = field(default_factory=dict)
    compiled_blocks: int = 0
    images_per_pass: int | None = None
    model: str = ""
    weights: str = ""
    weights_kind: str = ""
    run: dict = field(default_factory=dict)
    name: str = ""
    unit: dict = field(default_factory=dict)
    position: dict | None = None
    trf: dict | None = None
    full_metrics: bool = False
    std: np.ndarray | None = None
    spread: dict | None = None
    per_image: object | None = None
    erf_settings: dict = field(default_factory=dict)
    fast_paths: dict | None = None

    @property
    def num_images(self) -> int:
        return len(self.used)

    @property
    def label(self) -> str:
        """The name in the file names: ``name`` if set, else the model, else the model in the settings."""
        return self.name or self.model_name

    @property
    def model_name(self) -> str:
        return self.model or str(self.settings.get("model", "model"))

    def metrics(self) -> dict:
        """:func:`~hpx_analysis.erf.metrics.erf_metrics` of the matrix (around the unit's
        position when it is known).

        Returns:
            dict: metric name -> value.
        """
        centre = self.position.get("centre_px") if self.position else None
        trf_px = self.trf.get("pixels") if self.trf else None
        return erf_metrics(self.matrix, centre=centre, full=self.full_metrics, trf_pixels=trf_px)

    def extras(self) -> dict:
        """The optional fields that are set (see the class docstring), JSON-ready.

        Returns:
            dict: record key -> value.
        """
        out: dict = {}
        if self.name and self.name != self.model_name:
            out["label"] = self.name
        if self.unit:
            out["unit"] = dict(self.unit)
        if self.position is not None:
            out["unit_position"] = dict(self.position)
        if self.trf is not None:
            out["trf"] = dict(self.trf)
        if self.full_metrics:
            out["full_metrics"] = True
        if self.spread is not None:
            out["metrics_spread"] = self.spread
            out["per_image_count"] = getattr(self.per_image, "count", None)
        return out

    def as_dict(self) -> dict:
        """Everything except the matrix and the model record, JSON-ready.

        Returns:
            dict: record key -> value.
        """
        return {
            "method": self.method,
            "precision": self.precision,
            "input_size": list(self.input_size),
            "device": self.device,
            "num_images": self.num_images,
            "images_used": list(self.used),
            "images_skipped": list(self.skipped),
            "nonfinite_values": self.nonfinite_values,
            "nonfinite_policy": "images with non-finite gradient values are excluded from the mean",
            "seconds": self.seconds,
            "seconds_per_image": self.seconds / max(1, self.num_images + len(self.skipped)),
            "precision_deviation": self.precision_deviation,
            "settings": dict(self.settings),
            "compiled_blocks": self.compiled_blocks,
            "images_per_pass": self.images_per_pass,
            **({"erf_settings": dict(self.erf_settings)} if self.erf_settings else {}),
            **({"fast_paths": self.fast_paths} if self.fast_paths is not None else {}),
        }

    def record(self) -> dict:
        """The JSON record: model and weights, the run, the result, its metrics and the versions.

        Returns:
            dict: the record written to ``erf_<label>.json``.
        """
        from ..versions import versions

        head = {"model": self.model_name, "weights": self.weights, "weights_kind": self.weights_kind}
        return {
            **head,
            **self.extras(),
            **self.run,
            **self.as_dict(),
            "metrics": self.metrics(),
            "versions": versions(),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row: model, weights, method, size, image counts and the metrics (``erf_metrics.csv``).

        Returns:
            pd.DataFrame: one row.
        """
        extras = {"label": self.name} if self.name and self.name != self.model_name else {}
        row = {
            **extras,
            "model": self.model_name,
            **self.unit,
            **({"checkpoint": self.run["checkpoint"]} if "checkpoint" in self.run else {}),
            "weights": self.weights,
            "method": self.method,
            "size": int(self.settings.get("size") or self.input_size[0]),
            "num_images": self.num_images,
            "num_skipped": len(self.skipped),
            "nonfinite_values": self.nonfinite_values,
            **self.metrics(),
        }
        return _integer_pixels(pd.DataFrame([row]))

    def save(self, out_dir: str | Path) -> Path:
        """Write ``erf_<label>.npy`` (float64) and ``erf_<label>.json``; returns the folder.

        Args:
            out_dir: the output folder (created if missing).

        Returns:
            Path: ``out_dir``.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        np.save(out_dir / f"erf_{self.label}.npy", np.asarray(self.matrix, dtype=np.float64))
        if self.std is not None:
            np.save(out_dir / f"erf_{self.label}_std.npy", np.asarray(self.std, dtype=np.float64))
        if self.per_image is not None and getattr(self.per_image, "maps", None):
            np.savez_compressed(
                out_dir / f"erf_{self.label}_per_image.npz",
                maps=np.stack(self.per_image.maps),
                keys=np.array(self.per_image.keys),
            )
            self.per_image.frame().to_csv(out_dir / f"erf_{self.label}_per_image.csv", index=False)
        (out_dir / f"erf_{self.label}.json").write_text(json.dumps(self.record(), indent=1, default=str))
        return out_dir

    @classmethod
    def load(cls, out_dir: str | Path, label: str) -> ErfResult:
        """Read back what :meth:`save` wrote for ``label``.

        Args:
            out_dir: the folder.
            label: the run label in the file names.

        Returns:
            ErfResult: the result as saved.
        """
        out_dir = Path(out_dir)
        matrix = np.load(out_dir / f"erf_{label}.npy")
        record = json.loads((out_dir / f"erf_{label}.json").read_text())
        own = {k: record.pop(k) for k in ("model", "weights", "weights_kind")}
        own["name"] = record.pop("label", "")
        own["unit"] = record.pop("unit", {})
        own["position"] = record.pop("unit_position", None)
        own["trf"] = record.pop("trf", None)
        own["full_metrics"] = record.pop("full_metrics", False)
        own["spread"] = record.pop("metrics_spread", None)
        record.pop("per_image_count", None)
        own["erf_settings"] = record.pop("erf_settings", {})
        own["fast_paths"] = record.pop("fast_paths", None)
        std_file = out_dir / f"erf_{label}_std.npy"
        own["std"] = np.load(std_file) if std_file.is_file() else None
        fields = dict(
            method=record.pop("method"),
            precision=record.pop("precision"),
            input_size=tuple(record.pop("input_size")),
            device=record.pop("device"),
            used=record.pop("images_used"),
            skipped=record.pop("images_skipped"),
            nonfinite_values=record.pop("nonfinite_values"),
            seconds=record.pop("seconds"),
            precision_deviation=record.pop("precision_deviation"),
            settings=record.pop("settings"),
            compiled_blocks=record.pop("compiled_blocks"),
            images_per_pass=record.pop("images_per_pass"),
        )
        for key in _DERIVED:
            record.pop(key, None)
        return cls(matrix=matrix, **fields, **own, run=record)


def _integer_pixels(table: pd.DataFrame) -> pd.DataFrame:
    for column in table.columns:
        if column.startswith("square_side_") or column in _INTEGER_COLUMNS:
            table[column] = table[column].astype("Int64")  # integer pixels; empty where none qualifies
    return table


@dataclass
class ErfComparison:
    """The ERFs of several models (the paper's Fig. 5), in order."""

    results: list[ErfResult] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """One row per model (``erf_metrics.csv``).

        Returns:
            pd.DataFrame: the table (empty without results).
        """
        if not self.results:
            return pd.DataFrame()
        return _integer_pixels(pd.concat([r.to_frame() for r in self.results], ignore_index=True))

    def save(self, out_dir: str | Path) -> Path:
        """Every model's ``erf_<model>.npy`` / ``.json`` and ``erf_metrics.csv``.

        Args:
            out_dir: the output folder.

        Returns:
            Path: ``out_dir``.
        """
        out_dir = Path(out_dir)
        for result in self.results:
            result.save(out_dir)
        self.save_table(out_dir)
        return out_dir

    def save_table(self, out_dir: str | Path) -> Path:
        """Only ``erf_metrics.csv`` (the per-model files already written).

        Args:
            out_dir: the output folder.

        Returns:
            Path: ``out_dir``.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        short_weights(self.to_frame()).to_csv(out_dir / METRICS_FILE, index=False)
        return out_dir

    @classmethod
    def load(cls, out_dir: str | Path) -> ErfComparison:
        """The models listed in ``erf_metrics.csv``, each read back with :meth:`ErfResult.load`.

        Args:
            out_dir: the folder of ``erf_metrics.csv``.

        Returns:
            ErfComparison: the results in the table's order.
        """
        out_dir = Path(out_dir)
        table = pd.read_csv(out_dir / METRICS_FILE)
        labels = table["model"].astype(str)
        if "label" in table:
            labels = table["label"].where(table["label"].notna(), table["model"]).astype(str)
        return cls([ErfResult.load(out_dir, label) for label in labels])
