"""The probe commands' jobs: training one probe model and evaluating several against
distance, each writing its files; ``hpx-analyze probe train|eval`` and the report's probe
section call them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import torch

from ..settings import Hooks, RunContext, Settings
from .task import ProbeBatch, ProbeTask
from .train import ProbeTrainSettings, TrainResult, train_probe

__all__ = ["ProbeEvalSettings", "ProbeEval", "probe_eval_job", "probe_train_job", "conv_probe_reach_px"]

EVAL_TABLE_FILE, TRAIN_RECORD_FILE = "probe_eval.csv", "record.json"


def conv_probe_reach_px(task) -> int:
    """The largest distance ``conv_probe`` (SepConv 7x7) can see.

    Args:
        task: the probe task.

    Returns:
        int: 15 px plus half the square's side.
    """
    return 15 + task.square // 2


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
    """
    from ..jobs import loaded_models
    from .evaluate import accuracy_by_distance, bin_accuracy, distance_bins, iter_test_split
    from .task import probe_task_for

    settings, run, hooks = settings or ProbeEvalSettings(), run or RunContext(), hooks or Hooks()
    tables, bins, weights = [], {}, {}
    for loaded in loaded_models(models, run):
        task = probe_task_for(loaded.model)  # the model's image size
        batches = images if images is not None else iter_test_split(task, num_images=settings.num_images)
        table = accuracy_by_distance(loaded.model, batches, name=loaded.name, weights=loaded.weights)
        tables.append(table)
        bins[loaded.name] = bin_accuracy(table, distance_bins(task))
        weights[loaded.name] = loaded.weights
        hooks.log(
            f"{loaded.name} ({loaded.weights}): " + ", ".join(f"{k} px {v:.3f}" for k, v in bins[loaded.name].items())
        )
    result = ProbeEval(pd.concat(tables, ignore_index=True), bins, weights)
    if run.out_dir is not None and run.is_main:
        from ..plotting.files import save_probe_figure

        run.out_dir.mkdir(parents=True, exist_ok=True)
        result.table.to_csv(run.out_dir / EVAL_TABLE_FILE, index=False)
        rf_px = {"conv_probe": conv_probe_reach_px(ProbeTask())} if settings.mark_conv_reach else None
        save_probe_figure(result.table, run.out_dir, rf_px=rf_px)
    return result


def probe_train_job(
    model: str,
    settings: ProbeTrainSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
) -> tuple[TrainResult, dict]:
    """Train one probe model from its seeded random init on the CPU and record its test
    accuracies, written as ``hpx-analyze probe train`` writes it: the files of
    :func:`~hpx_analysis.probe.train.train_probe` plus ``record.json`` in ``run.out_dir``.

    Args:
        model: the probe model's name (its ``settings.seed`` random init is trained).
        settings: how it is trained (default :class:`ProbeTrainSettings`).
        run: the output folder (None: nothing written).
        hooks: ``on_batch(row)`` and ``progress(1)`` after every step.

    Returns:
        tuple[TrainResult, dict]: the training result and the record (steps, seconds,
        snapshots, parameters, config, task, threads and the test accuracies).
    """
    from ..io.weights import load_model
    from ..models.fast import fast_path_record
    from .evaluate import probe_record
    from .task import probe_task_for

    settings, run = settings or ProbeTrainSettings(), run or RunContext()
    loaded = load_model(f"{model}=random", device="cpu", seed=settings.seed)
    # the task is rendered at the model's own image size (64 px, or 128 px for two-stage probes)
    settings = settings.replace(task={**settings.task, "size": probe_task_for(loaded.model).size})
    result = train_probe(loaded.model, settings, run, hooks, name=loaded.name)
    record = probe_record(result.model, probe_task_for(result.model))
    entry = {
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
    if run.out_dir is not None and run.is_main:
        (run.out_dir / TRAIN_RECORD_FILE).write_text(json.dumps(entry, indent=2))
    return result, entry
