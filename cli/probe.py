"""``hpx-analyze probe train|eval``: the global-context probe task (:mod:`hpx_analysis.probe`).

``train`` trains one probe model on the CPU (seeded), writing ``<model>.safetensors``,
``train_log.csv`` (step, loss, train_acc, val_acc, lr, seconds), snapshots
``<model>_step<k>.safetensors``, ``train.json`` and ``record.json`` (test accuracies per
distance bin). ``--bundle`` also copies them into the package's bundled weights.
``eval`` writes ``probe_eval.csv`` (model, distance_px, accuracy, n, ci_low, ci_high (95 % Wilson),
weights) and
``probe_eval.png`` for every model given.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from typing import Annotated, Optional

import pandas as pd
import torch
import typer

from hpx_analysis.io.weights import load_model
from hpx_analysis.models import PROBES
from hpx_analysis.plotting.files import save_probe_figure
from hpx_analysis.probe.bundled import RECORD, WEIGHTS_DIR
from hpx_analysis.probe.evaluate import (
    accuracy_by_distance,
    bin_accuracy,
    distance_bins,
    iter_test_split,
    probe_record,
)
from hpx_analysis.probe.task import probe_task_for
from hpx_analysis.probe.train import TrainConfig, train_probe

from .common import (
    DeviceOption,
    ModelOption,
    OutOption,
    SeedOption,
    default_out,
    fail,
    model_specs,
    progress,
    split_list,
    stderr_console,
    user_errors,
)

__all__ = ["app"]

app = typer.Typer(
    help="The global-context probe task: train small probe models, evaluate accuracy against distance.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("train")
def train(
    model: Annotated[str, typer.Option("--model", "-m", help=f"Probe model to train ({', '.join(PROBES)}).")],
    out: OutOption = None,
    seed: SeedOption = 0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 400,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 2e-3,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Linear warm-up steps.")] = 40,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1, help="Validation every N steps.")] = 50,
    snapshots: Annotated[
        Optional[str],
        typer.Option("--snapshots", metavar="STEP[,STEP...]", help="Steps after which a snapshot is saved."),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0: torch's default).")] = 0,
    bundle: Annotated[
        bool, typer.Option("--bundle", help="Also install the result as the package's bundled weights.")
    ] = False,
) -> None:
    """Train one probe model on the probe task on the CPU, seeded, with a progress bar of loss and accuracy."""
    (spec,) = model_specs([model])
    if spec.name not in PROBES:
        fail(f"{model!r} is not a probe model (one of {', '.join(PROBES)})")
    snaps = tuple(split_list(snapshots, "--snapshots", int, "integers") or ())
    out_dir = default_out(f"probe/{spec.name}", out)
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=min(warmup, steps),
        eval_every=eval_every,
        snapshots=snaps,
        seed=seed,
        threads=threads,
    )
    with user_errors():
        loaded = load_model(f"{spec.name}=random", device="cpu", seed=seed)
        cfg = dataclasses.replace(cfg, task={"size": probe_task_for(loaded.model).size})
        with progress() as bar:
            task = bar.add_task(f"train {spec.name}", total=steps)

            def show(step: int, row: dict) -> None:
                val = f" val {row['val_acc']:.3f}" if row["val_acc"] == row["val_acc"] else ""
                desc = f"train {spec.name} loss {row['loss_avg']:.3f} acc {row['train_acc_avg']:.3f}{val}"
                bar.update(task, advance=1, description=desc)

            result = train_probe(loaded.model, cfg, out=out_dir, name=spec.name, progress=show)
        record = probe_record(result.model, probe_task_for(result.model))
    meta = json.loads((out_dir / "train.json").read_text())
    entry = {
        "steps": steps,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / steps, 3),
        "snapshots": [s for s in snaps if s < steps],
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "config": meta["config"],
        "task": meta["task"],
        "torch_threads": torch.get_num_threads(),
        **record,
    }
    (out_dir / "record.json").write_text(json.dumps(entry, indent=2))
    stderr_console.print(
        f"{spec.name}: {steps} steps in {result.seconds:.0f} s; test accuracy per distance bin "
        + ", ".join(f"{k} px {v:.3f}" for k, v in record["bin_accuracy"].items())
    )
    if bundle:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for path in [result.checkpoint, *result.snapshots]:
            shutil.copy2(path, WEIGHTS_DIR / path.name)
        shutil.copy2(out_dir / "train_log.csv", WEIGHTS_DIR / f"{spec.name}_train_log.csv")
        records = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
        records[spec.name] = entry
        RECORD.write_text(json.dumps(dict(sorted(records.items())), indent=1) + "\n")
        stderr_console.print(f"bundled into {WEIGHTS_DIR}")
    stderr_console.print(f"wrote {out_dir}")


@app.command("eval")
def evaluate(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "cpu",
    seed: SeedOption = 0,
    num_images: Annotated[
        Optional[int], typer.Option("--num-images", min=1, help="Use the first N test images (default: all).")
    ] = None,
) -> None:
    """Accuracy against distance on the fixed test split for every model given: probe_eval.csv and probe_eval.png."""
    specs = model_specs(model)
    out_dir = default_out("probe", out)
    tables = []
    with user_errors():
        for spec in specs:
            loaded = load_model(spec, device=device.value, seed=seed)
            task = probe_task_for(loaded.model)
            batches = iter_test_split(task, num_images=num_images)
            table = accuracy_by_distance(loaded.model, batches, name=loaded.name, weights=loaded.weights)
            tables.append(table)
            bins = bin_accuracy(table, distance_bins(task))
            stderr_console.print(
                f"{loaded.name} ({loaded.weights}): " + ", ".join(f"{k} px {v:.3f}" for k, v in bins.items())
            )
    table = pd.concat(tables, ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "probe_eval.csv", index=False)
    save_probe_figure(table, out_dir)
    stderr_console.print(f"wrote {out_dir}/probe_eval.csv and probe_eval.png")
