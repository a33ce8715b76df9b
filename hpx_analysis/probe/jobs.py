"""The probe commands' jobs: training one probe model and evaluating several against
distance, each writing its files; ``hpx-analyze probe train|eval`` and the report's probe
section call them.

A training run writes its files into a staging folder inside the output folder; only a
complete run replaces the previous run's files there, ``record.json`` last. An output folder
with training files but no ``record.json`` holds no finished run. The caller holds the
output folder's lock (the CLI's ``output_folder``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..plotting.labels import short_weights, weights_tag
from ..settings import Hooks, RunContext, Settings
from .task import ProbeBatch, ProbeTask
from .train import ProbeTrainSettings, TrainResult, train_probe

__all__ = [
    "ProbeEvalSettings",
    "ProbeEval",
    "probe_eval_job",
    "probe_train_job",
    "conv_probe_reach_px",
    "require_probe_models",
    "is_probe_train_file",
]

EVAL_TABLE_FILE, TRAIN_RECORD_FILE = "probe_eval.csv", "record.json"


def require_probe_models(models: Iterable) -> list:
    """The models as a list, after checking that every one is a probe model.

    Args:
        models: specs (``"NAME[=WEIGHTS]"`` or :class:`~hpx_analysis.io.weights.ModelSpec`)
            or loaded models.

    Returns:
        list: the models as given.

    Raises:
        ValueError: a model is not one of the probe models (they classify the probe task's
            4 classes; other models have other heads).
        WeightsError: a spec names no known model.
    """
    from ..io.weights import parse_model_spec
    from ..models import PROBES

    models = list(models)
    for model in models:
        name = parse_model_spec(model).name if isinstance(model, str) else getattr(model, "name", None)
        if name not in PROBES:
            raise ValueError(
                f"{name or type(model).__name__} is not a probe model; the probe task takes one of {', '.join(PROBES)}"
            )
    return models


def is_probe_train_file(name: str) -> bool:
    """Whether a file name in an output folder is one ``probe train`` writes (replaced as a
    whole by the next run).

    Args:
        name: a file name.

    Returns:
        bool: True for ``train_log.csv``, ``train.json``, ``record.json`` and the
        checkpoints and snapshots of any probe model.
    """
    from ..models import PROBES

    records = "|".join(map(re.escape, ("train_log.csv", "train.json", TRAIN_RECORD_FILE)))
    probes = "|".join(map(re.escape, PROBES))
    return re.fullmatch(rf"{records}|(?:{probes})(?:_step\d+)?\.safetensors", name) is not None


def conv_probe_reach_px(task) -> int:
    """The largest distance ``conv_probe`` (SepConv 7x7) can see: the receptive radius of its
    registered architecture (:func:`~hpx_analysis.probe.analysis.receptive_radius_px`) plus
    half the square's side.

    Args:
        task: the probe task.

    Returns:
        int: the distance in px (17 for the 64 px task: 3 + 3 x 4 + 2).
    """
    import timm

    from .analysis import receptive_radius_px

    return int(receptive_radius_px(timm.create_model("conv_probe"))) + task.square // 2


@dataclass(frozen=True)
class ProbeEvalSettings(Settings):
    """What the evaluation against distance uses.

    Args:
        num_images: the first N images of the fixed test split (None: all).
        mark_conv_reach: draw ``conv_probe``'s reach as a dashed line in the figure.
    """

    num_images: int | None = None
    mark_conv_reach: bool = False


@dataclass
class ProbeEval:
    """Accuracy against distance of several models: ``table`` (model, distance_px, accuracy,
    n, weights) and per model the accuracy per distance bin (``bins``)."""

    table: pd.DataFrame
    bins: dict
    weights: dict

    def to_frame(self) -> pd.DataFrame:
        """The table written to ``probe_eval.csv``."""
        return self.table


def probe_eval_job(
    models: Iterable,
    images: ProbeBatch | None = None,
    settings: ProbeEvalSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> ProbeEval:
    """Accuracy against distance on the fixed test split, written as ``hpx-analyze probe
    eval`` writes it: ``probe_eval.csv`` and ``probe_eval.png`` in ``run.out_dir`` (None:
    nothing written).

    Args:
        models: specs or loaded models (:func:`~hpx_analysis.jobs.loaded_models`).
        images: labelled probe images (None: the fixed test split, its first
            ``settings.num_images``).
        settings: test images and figure options (default :class:`ProbeEvalSettings`).
        run: device, seed and output folder.
        hooks: ``log`` gets each model's accuracy per distance bin.

    Returns:
        ProbeEval: the table, the accuracy per bin and the weights of every model.

    Raises:
        ValueError: a model is not a probe model (before any is loaded).
    """
    from ..io.output import atomic_file
    from ..jobs import loaded_models
    from .evaluate import accuracy_by_distance, bin_accuracy, distance_bins, iter_test_split
    from .task import probe_task_for

    settings, run, hooks = settings or ProbeEvalSettings(), run or RunContext(), hooks or Hooks()
    models = require_probe_models(models)
    tables, bins, weights = [], {}, {}
    for loaded in loaded_models(models, run):
        task = probe_task_for(loaded.model)  # the model's image size
        batches = images if images is not None else iter_test_split(task, num_images=settings.num_images)
        table = accuracy_by_distance(loaded.model, batches, name=loaded.name, weights=loaded.weights)
        tables.append(table)
        bins[loaded.name] = bin_accuracy(table, distance_bins(task))
        weights[loaded.name] = loaded.weights
        hooks.log(
            f"{loaded.name} ({weights_tag(loaded.weights)}): "
            + ", ".join(f"{k} px {v:.3f}" for k, v in bins[loaded.name].items())
        )
    result = ProbeEval(pd.concat(tables, ignore_index=True), bins, weights)
    if run.out_dir is not None and run.is_main:
        from ..plotting.files import save_probe_figure

        run.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(run.out_dir / EVAL_TABLE_FILE) as tmp:
            short_weights(result.table).to_csv(tmp, index=False)
        rf_px = {"conv_probe": conv_probe_reach_px(ProbeTask())} if settings.mark_conv_reach else None
        save_probe_figure(result.table, run.out_dir, rf_px=rf_px)
    return result


def probe_train_job(
    model,
    settings: ProbeTrainSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> tuple[TrainResult, dict]:
    """Train one probe model on the CPU and record its test accuracies, written as
    ``hpx-analyze probe train`` writes it: the files of
    :func:`~hpx_analysis.probe.train.train_probe` plus ``record.json`` in ``run.out_dir``,
    replacing the previous run's files there only once all are written.

    Args:
        model: the probe model, ``"NAME[=WEIGHTS]"`` or a
            :class:`~hpx_analysis.io.weights.ModelSpec`: ``NAME``, ``NAME=auto`` and
            ``NAME=random`` train its ``settings.seed`` random init; other weights
            (``bundled[:STEP]``, a checkpoint file) are the start (recorded as ``init``).
        settings: how it is trained (default :class:`ProbeTrainSettings`).
        run: the output folder (None: nothing written); the caller holds its lock.
        hooks: ``on_batch(row)`` and ``progress(1)`` after every step.

    Returns:
        tuple[TrainResult, dict]: the training result (its files in ``run.out_dir``) and
        the record (init, steps, seconds, snapshots, parameters, config, task, threads and
        the test accuracies).

    Raises:
        ValueError: not a probe model, or training diverged
            (:class:`~hpx_analysis.probe.train.TrainingDivergedError`); nothing is written.
    """
    from ..io.output import staged_output

    settings, run = settings or ProbeTrainSettings(), run or RunContext()
    (model,) = require_probe_models([model])
    loaded = _initial_model(model, settings.seed)
    if run.out_dir is None or not run.is_main:
        return _train_and_record(loaded, settings, dataclasses.replace(run, out_dir=None), hooks)
    out = Path(run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with staged_output(out, is_probe_train_file, TRAIN_RECORD_FILE) as staging:
        result, entry = _train_and_record(loaded, settings, dataclasses.replace(run, out_dir=staging), hooks)
    result.checkpoint = out / result.checkpoint.name
    result.snapshots = [out / path.name for path in result.snapshots]
    return result, entry


def _initial_model(model, seed: int):
    """The model training starts from: its seeded random init for ``auto``/``random``
    weights, else the weights given."""
    from ..io.weights import ModelSpec, load_model, parse_model_spec

    spec = model if isinstance(model, ModelSpec) else parse_model_spec(model)
    if spec.weights in ("auto", "random"):
        spec = ModelSpec(spec.name, "random")
    return load_model(spec, device="cpu", seed=seed)


def _train_and_record(loaded, settings: ProbeTrainSettings, run: RunContext, hooks: Hooks | None):
    """Train ``loaded``'s model, then write ``record.json`` (atomically) into ``run.out_dir``."""
    from ..io.output import atomic_file
    from ..models.fast import fast_path_record
    from .evaluate import probe_record
    from .task import probe_task_for

    # the task is rendered at the model's own image size (64 px, or 128 px for two-stage probes)
    settings = settings.replace(task={**settings.task, "size": probe_task_for(loaded.model).size})
    result = train_probe(loaded.model, settings, run, hooks, name=loaded.name, init=loaded.weights)
    record = probe_record(result.model, probe_task_for(result.model))
    entry = {
        "init": loaded.weights,
        "steps": settings.steps,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / settings.steps, 3),
        "snapshots": [s for s in settings.snapshots if s < settings.steps],
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "config": settings.describe(),
        "task": ProbeTask(**{**settings.task, "seed": settings.seed}).as_dict(),
        "torch_threads": torch.get_num_threads(),
        **record,
        "fast_paths": fast_path_record(),
    }
    if run.out_dir is not None:
        with atomic_file(run.out_dir / TRAIN_RECORD_FILE) as tmp:
            tmp.write_text(json.dumps(entry, indent=2))
    return result, entry
