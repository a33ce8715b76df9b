"""``hpx-analyze probe train|eval``: the global-context probe task (:mod:`hpx_analysis.probe`).

``train`` trains one probe model on the CPU (seeded), writing ``<model>.safetensors``,
``train_log.csv`` (step, loss, train_acc, val_acc, lr, seconds), snapshots
``<model>_step<k>.safetensors``, ``train.json`` and ``record.json`` (test accuracies per
distance bin). A run writes into a staging folder inside ``--out`` and replaces the previous
run's files only when complete (``record.json`` last). ``--bundle`` also copies them into
the package's bundled weights.
``eval`` writes ``probe_eval.csv`` (model, distance_px, accuracy, n, weights) and
``probe_eval.png`` for every model given.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hpx_analysis.io.devices import resolve_device
from hpx_analysis.models import PROBES
from hpx_analysis.probe.bundled import bundle_probe
from hpx_analysis.probe.jobs import ProbeEvalSettings, probe_eval_job, probe_train_job, require_probe_models
from hpx_analysis.probe.train import ProbeTrainSettings
from hpx_analysis.settings import Hooks, RunContext

from .common import (
    DeviceOption,
    ModelOption,
    OutOption,
    SeedOption,
    command_line,
    default_out,
    job_hooks,
    model_specs,
    output_folder,
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

TrainModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME[=WEIGHTS]",
        help=f"Probe model to train ({', '.join(PROBES)}). NAME (or NAME=random) starts from its random "
        "init seeded by --seed; NAME=WEIGHTS (bundled[:STEP] or a .safetensors file) continues from those "
        "weights, recorded as init in train.json and record.json.",
    ),
]


@app.command("train")
def train(
    model: TrainModelOption,
    out: OutOption = None,
    seed: SeedOption = 0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 400,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 2e-3,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Linear warm-up steps.")] = 40,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1, help="Validation every N steps.")] = 50,
    snapshots: Annotated[
        Optional[str],
        typer.Option(
            "--snapshots", metavar="STEP[,STEP...]", help="Steps after which a snapshot is saved (each in 1..--steps)."
        ),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0: torch's default).")] = 0,
    bundle: Annotated[
        bool, typer.Option("--bundle", help="Also install the result as the package's bundled weights.")
    ] = False,
) -> None:
    """Train one probe model on the probe task on the CPU, seeded, with a progress bar of loss and accuracy.

    The files of the previous run in --out are replaced only when this run completes; a run that
    diverges (non-finite loss or weights) stops with exit status 2 and writes nothing."""
    (spec,) = model_specs([model])
    snaps = tuple(split_list(snapshots, "--snapshots", int, "integers") or ())
    with user_errors():
        require_probe_models([spec])
        options = dict(steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every, seed=seed, threads=threads)
        settings = ProbeTrainSettings(**options, warmup=min(warmup, steps), snapshots=snaps)
    with user_errors(), output_folder(default_out(f"probe/{spec.name}", out)) as out_dir, progress() as bar:
        task = bar.add_task(f"train {spec.name}", total=steps)

        def show(row: dict) -> None:
            val = f" val {row['val_acc']:.3f}" if row["val_acc"] == row["val_acc"] else ""
            desc = f"train {spec.name} loss {row['loss_avg']:.3f} acc {row['train_acc_avg']:.3f}{val}"
            bar.update(task, advance=1, description=desc)

        run = RunContext(out_dir=out_dir, seed=seed, command=command_line())
        result, entry = probe_train_job(spec, settings, run, Hooks(on_batch=show))
    stderr_console.print(
        f"{spec.name}: {steps} steps in {result.seconds:.0f} s; test accuracy per distance bin "
        + ", ".join(f"{k} px {v:.3f}" for k, v in entry["bin_accuracy"].items())
    )
    if bundle:
        folder = bundle_probe(spec.name, [result.checkpoint, *result.snapshots], out_dir / "train_log.csv", entry)
        stderr_console.print(f"bundled into {folder}")
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
    """Accuracy against distance on the fixed test split for every probe model given: probe_eval.csv, .png."""
    specs = model_specs(model)
    with user_errors():
        require_probe_models(specs)
    settings = ProbeEvalSettings(num_images=num_images)
    with user_errors(), output_folder(default_out("probe", out)) as out_dir, job_hooks(False) as hooks:
        run = RunContext(device=resolve_device(device.value), out_dir=out_dir, seed=seed, command=command_line())
        probe_eval_job(specs, None, settings, run, hooks)
    stderr_console.print(f"wrote {out_dir}/probe_eval.csv and probe_eval.png")
