"""Training a probe model on the probe task (CPU, seeded): AdamW with linear warm-up,
cosine decay and gradient clipping; a CSV log, snapshots along the way and a checkpoint."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..settings import Hooks, RunContext, Settings
from .task import ProbeTask

__all__ = ["ProbeTrainSettings", "TrainConfig", "TrainResult", "TrainingDivergedError", "train_probe", "accuracy"]


class TrainingDivergedError(ValueError):
    """The loss or a parameter stopped being finite; training stops (the message says where)."""


@dataclass(frozen=True)
class ProbeTrainSettings(Settings):
    """How a probe model is trained (recorded as ``config`` in ``train.json``).

    Args:
        steps: optimiser steps.
        batch_size: images per step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay of the weight matrices and kernels.
        warmup: linear warm-up steps.
        clip: gradient-norm clipping.
        eval_every: validation every N steps (and after the last).
        val_size: validation images.
        snapshots: steps after which the weights are saved (besides the last), each in
            ``1..steps``.
        seed: seed of the initial torch state and of the task's samples.
        threads: torch CPU threads (0: leave as is).
        task: :class:`~hpx_analysis.probe.task.ProbeTask` fields other than the seed.
    """

    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 60
    clip: float = 1.0
    eval_every: int = 50
    val_size: int = 256
    snapshots: tuple[int, ...] = ()  # steps after which the weights are saved (besides the last)
    seed: int = 0
    threads: int = 0  # torch threads (0: leave as is)
    task: dict = field(default_factory=dict)  # ProbeTask fields

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshots", tuple(int(s) for s in self.snapshots))
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a finite number above 0, got {self.lr}")
        outside = sorted({s for s in self.snapshots if not 1 <= s <= self.steps})
        if outside:
            raise ValueError(
                f"snapshot step(s) {', '.join(map(str, outside))} outside 1..{self.steps} "
                f"(the steps of this run); give steps between 1 and {self.steps}"
            )


TrainConfig = ProbeTrainSettings  # the name notebooks and older scripts use


@dataclass
class TrainResult:
    """A trained model, its log rows, the seconds taken and the files written (checkpoint and
    snapshots; None and empty when nothing was written)."""

    model: torch.nn.Module
    log: list[dict]
    seconds: float
    checkpoint: Path | None = None
    snapshots: list[Path] = field(default_factory=list)


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Per-sample correctness of ``model`` in eval mode (its mode is restored).

    Args:
        model: a classifier.
        images: ``(N, 3, H, W)`` images.
        labels: ``(N,)`` class indices.
        batch_size: images per forward pass.

    Returns:
        Tensor: ``(N,)`` bools, True where the top-1 class is the label.
    """
    was = model.training
    model.eval()
    out = [model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
    model.train(was)
    return torch.cat(out) == labels


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def train_probe(
    model: torch.nn.Module,
    settings: ProbeTrainSettings | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    *,
    name: str = "model",
    init: str = "random init",
    **overrides,
) -> TrainResult:
    """Train ``model`` in place for ``settings.steps`` steps.

    Args:
        model: a probe model (left in eval mode).
        settings: how it is trained (default :class:`ProbeTrainSettings`).
        run: ``run.out_dir`` receives ``train_log.csv``, ``<name>_step<k>.safetensors``
            snapshots, ``<name>.safetensors`` and ``train.json``, each written atomically
            (None: nothing written).
        hooks: ``on_batch(row)`` after every step (row: step, loss, train_acc, val_acc on
            evaluation steps, lr, seconds, loss_avg, train_acc_avg) and ``progress(1)``.
        name: the model's name in the file names.
        init: the weights training starts from, as recorded in ``train.json``.
        **overrides: settings fields replacing those of ``settings`` (e.g. ``steps=4``).

    Returns:
        TrainResult: the model, its log and the files written.

    Raises:
        TrainingDivergedError: the loss or a parameter is not finite after a step (the
            snapshots written before stay; :func:`~hpx_analysis.probe.jobs.probe_train_job`
            writes nothing then).
    """
    cfg = ProbeTrainSettings.from_overrides(settings, **overrides)
    out = (run or RunContext()).out_dir
    hooks = hooks or Hooks()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    task = ProbeTask(**{**cfg.task, "seed": cfg.seed})
    val = task.batch("val", 0, cfg.val_size)
    opt, sched = _optimizer(model, cfg)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    snaps: list[Path] = []
    model.train()
    start = time.perf_counter()
    loss_avg = acc_avg = None
    for step in range(1, cfg.steps + 1):
        loss, acc = _step(model, task.batch("train", step, cfg.batch_size), opt, sched, cfg)
        _check_finite(model, loss, step, cfg)
        loss_avg = loss if loss_avg is None else 0.9 * loss_avg + 0.1 * loss
        acc_avg = acc if acc_avg is None else 0.9 * acc_avg + 0.1 * acc
        row = {"step": step, "loss": loss, "train_acc": acc, "val_acc": float("nan"), "lr": sched.get_last_lr()[0]}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row["val_acc"] = accuracy(model, val.images, val.labels).float().mean().item()
        row["seconds"] = time.perf_counter() - start
        log.append(row)
        hooks.on_batch({**row, "loss_avg": loss_avg, "train_acc_avg": acc_avg})
        hooks.progress(1)
        if out is not None and step in cfg.snapshots and step != cfg.steps:
            snaps.append(_save_state(model, out / f"{name}_step{step}.safetensors"))
    seconds = time.perf_counter() - start
    model.eval()
    meta = {"model": name, "init": init, "config": cfg.describe(), "task": task.as_dict(), "seconds": seconds}
    ckpt = None if out is None else _write_training(model, log, meta, out, name)
    return TrainResult(model, log, seconds, ckpt, snaps)


def _optimizer(model: torch.nn.Module, cfg: ProbeTrainSettings):
    """AdamW (weight decay on matrices and kernels, not on the ``z`` positional embeddings)
    and its warm-up/cosine schedule."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "z" not in n.split(".")[-1]]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "z" not in n.split(".")[-1])]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=cfg.lr
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))


def _step(model: torch.nn.Module, batch, opt, sched, cfg: ProbeTrainSettings) -> tuple[float, float]:
    """One optimiser step on ``batch``; returns its loss and accuracy."""
    logits = model(batch.images)
    loss = F.cross_entropy(logits, batch.labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    opt.step()
    sched.step()
    return loss.item(), (logits.argmax(1) == batch.labels).float().mean().item()


def _check_finite(model: torch.nn.Module, loss: float, step: int, cfg: ProbeTrainSettings) -> None:
    """Stop when the loss or a parameter is NaN or infinite."""
    bad = None if math.isfinite(loss) else f"the loss is {loss}"
    if bad is None:
        nonfinite = (n for n, p in model.named_parameters() if not p.isfinite().all())
        bad = next((f"parameter {n} is not finite" for n in nonfinite), None)
    if bad is not None:
        raise TrainingDivergedError(
            f"training diverged at step {step} of {cfg.steps}: {bad} (learning rate {cfg.lr:g}); "
            "stopped, no checkpoint written; try a smaller learning rate"
        )


def _write_training(model, log: list, meta: dict, out: Path, name: str) -> Path:
    """The checkpoint, ``train_log.csv`` and ``train.json`` (each atomically); returns the
    checkpoint's path."""
    from ..io.output import atomic_file
    from ..models.fast import fast_path_record

    ckpt = _save_state(model, out / f"{name}.safetensors")
    with atomic_file(out / "train_log.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log[0]))
        w.writeheader()
        w.writerows(log)
    meta = {**meta, "steps": meta["config"]["steps"], "fast_paths": fast_path_record()}
    with atomic_file(out / "train.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return ckpt


def _save_state(model: torch.nn.Module, path: Path) -> Path:
    """Write the model's weights as ``path`` (safetensors, atomically); returns ``path``."""
    from ..io.output import atomic_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_file(path) as tmp:
        save_file(state, tmp)
    return path
