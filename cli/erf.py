"""``hpx-analyze erf``: effective receptive fields (the paper's Fig. 5), one heatmap per model.

Writes into ``--out`` (default ``figures/erf``): ``erf_<model>.npy`` (raw float64 mean
contribution matrix), ``erf_<model>.json`` (settings, weights, images used and skipped,
non-finite count, metrics, time, versions, device), ``erf_metrics.csv``, ``erf.png`` and
``erf.pdf``. Runs under ``torchrun`` too: images are sharded across ranks, rank 0 writes.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import torch
import typer

from hpx_analysis.erf import METHODS, PRECISIONS, ErfError, ErfResult
from hpx_analysis.execution.distributed import DistContext, dist_context
from hpx_analysis.erf.metrics import erf_metrics
from hpx_analysis.erf.run import discard_partial, partial_stem, run_erf
from hpx_analysis.io.images import list_images
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.weights import LoadedModel, load_model

from .common import (DeviceOption, ImagesOption, ModelOption, NumImagesOption, OutOption, SeedOption,
                     default_out, fail, model_specs, progress, stderr_console, user_errors)

__all__ = ["erf", "write_model_outputs", "write_summary", "versions"]

DEFAULT_NUM_IMAGES = 50
# a CPU is busy with one image (batches are slower per image there); on an H100, batch 8 at
# 1024 px took hpx_former_s18 from 61 to 20 ms per image with 13.2 GiB (smaller GPUs split it)
CPU_BATCH_SIZE, CUDA_BATCH_SIZE = 1, 8
MIN_SIZE = 32


def versions() -> dict:
    import captum
    import timm

    import hpx_analysis

    return {"hpx_analysis": hpx_analysis.__version__, "torch": torch.__version__, "timm": timm.__version__,
            "captum": captum.__version__, "numpy": np.__version__, "python": platform.python_version()}


def write_model_outputs(out_dir: Path, loaded: LoadedModel, result: ErfResult, extra: dict) -> dict:
    """``erf_<model>.npy`` and ``erf_<model>.json``; returns the metrics."""
    metrics = erf_metrics(result.matrix)
    np.save(out_dir / f"erf_{loaded.name}.npy", result.matrix.astype(np.float64))
    record = {**loaded.as_dict(), **extra, **result.as_dict(), "metrics": metrics, "versions": versions()}
    (out_dir / f"erf_{loaded.name}.json").write_text(json.dumps(record, indent=1, default=str))
    return metrics


def write_summary(out_dir: Path, rows: list[dict], results: list[ErfResult]) -> None:
    """``erf_metrics.csv`` and ``erf.png`` / ``erf.pdf``."""
    import matplotlib.pyplot as plt

    from hpx_analysis.plotting.erf import plot_erf

    table = pd.DataFrame(rows)
    for column in table.columns:
        if column.startswith("square_side_") or column in ("r50_px", "r90_px"):
            table[column] = table[column].astype("Int64")  # integer pixels; empty where none qualifies
    table.to_csv(out_dir / "erf_metrics.csv", index=False)
    fig = plot_erf(results)
    fig.savefig(out_dir / "erf.png", dpi=150)
    fig.savefig(out_dir / "erf.pdf")
    plt.close(fig)


def _run_one(loaded: LoadedModel, items, *, out_dir: Path, settings: dict, resume: bool, ctx: DistContext,
             device: torch.device, size: int, batch_size: int, method: str, precision: str,
             ig_steps: int, compile_blocks: bool) -> ErfResult:
    stem = partial_stem(out_dir, loaded.name)
    kwargs = dict(settings=settings, state_stem=stem, resume=resume, ctx=ctx, size=size, batch_size=batch_size,
                  method=method, precision=precision, device=device, ig_steps=ig_steps,
                  compile_blocks=compile_blocks)
    if not ctx.is_main:
        return run_erf(loaded.model, items, **kwargs)
    with progress() as bar:
        shard_note = f" (rank 0's share of {ctx.world_size})" if ctx.distributed else ""
        task = bar.add_task(f"ERF {loaded.name}{shard_note}", total=None)

        def on_start(done: int, todo: int) -> None:
            if done:
                stderr_console.print(f"resuming {loaded.name}: {done} image(s) already done")
            bar.update(task, total=todo)

        return run_erf(loaded.model, items, progress=lambda n: bar.advance(task, n),
                       on_start=on_start, **kwargs)


def erf(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    size: Annotated[int, typer.Option("--size", help="Side length the images are resized to (px).")] = 1024,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Images per forward/backward pass (exact: same matrix as one at a time). Default: "
                             f"{CPU_BATCH_SIZE} on a CPU, {CUDA_BATCH_SIZE} on CUDA. When the GPU runs out of "
                             "memory, the pass is split in halves until it fits.", show_default=False)] = None,
    method: Annotated[str, typer.Option("--method", help="grad (Luo et al./RepLKNet protocol), saliency or "
                                                         "integrated_gradients (captum).")] = "grad",
    precision: Annotated[str, typer.Option("--precision", help="fp32 (full float32), or tf32 products and "
                                                               "convolutions, or bf16/fp16 autocast (CUDA only; "
                                                               "the deviation from fp32 is recorded).")] = "fp32",
    ig_steps: Annotated[int, typer.Option("--ig-steps", help="Integration steps for integrated_gradients.")] = 32,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its partial "
                                                          "accumulation in --out.")] = False,
    grad_checkpointing: Annotated[bool, typer.Option(
        "--grad-checkpointing", help="Recompute activations in the backward pass (timm's "
                                     "set_grad_checkpointing): far less memory for large batches or "
                                     "sizes, about 1.5x the time; same matrix.")] = False,
    compile_blocks: Annotated[bool, typer.Option(
        "--compile", help="Run the model's repeated blocks through torch.compile: faster and leaner on a GPU "
                          "for many images, after a minute or more of compiling the first time; slower on "
                          "CPUs. Same matrix up to float32 rounding.")] = False,
) -> None:
    """Effective receptive fields (Luo et al. / RepLKNet protocol) of the centre unit of the last
    feature map, averaged over images: arrays, metrics and a side-by-side heatmap figure."""
    specs = model_specs(model)
    if method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if precision not in PRECISIONS:
        fail(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if size < MIN_SIZE:
        fail(f"--size must be at least {MIN_SIZE} px (the models downsample by 32), got {size}")
    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    if ig_steps < 1:
        fail(f"--ig-steps must be at least 1, got {ig_steps}")
    with user_errors():
        dev = resolve_device(device)
        if precision != "fp32" and dev.type != "cuda":
            fail(f"--precision {precision} needs CUDA; on {dev.type} use fp32")
        ctx = dist_context(dev)
        batch_size = batch_size or (CUDA_BATCH_SIZE if dev.type == "cuda" else CPU_BATCH_SIZE)
        if dev.type == "cuda" and ctx.distributed:
            dev = torch.device("cuda", torch.cuda.current_device())
        wanted = num_images if num_images is not None else DEFAULT_NUM_IMAGES
        items = list_images(images, wanted)
        if ctx.is_main and len(items) < wanted:
            stderr_console.print(f"note: only {len(items)} image(s) available, asked for {wanted}")
        out_dir = default_out("erf", out)
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        rows, results = [], []
        for spec in specs:
            torch.manual_seed(seed)
            loaded = load_model(spec, device=dev, seed=seed)
            if grad_checkpointing:
                if not hasattr(loaded.model, "set_grad_checkpointing"):
                    fail(f"{loaded.name} does not support --grad-checkpointing")
                loaded.model.set_grad_checkpointing(True)
            # a stable description of the weights guards --resume (the full text, which may
            # carry a changing download error, is in the JSON's "weights")
            weights_key = loaded.weights if loaded.weights_kind != "random" else f"random init (seed {seed})"
            settings = {"model": loaded.name, "weights": weights_key, "size": size, "method": method,
                        "precision": precision, "ig_steps": ig_steps if method == "integrated_gradients" else None,
                        "images": str(images) if images is not None else "bundled scikit-image photographs"}
            try:
                result = _run_one(loaded, items, out_dir=out_dir, settings=settings, resume=resume, ctx=ctx,
                                  device=dev, size=size, batch_size=batch_size, method=method,
                                  precision=precision, ig_steps=ig_steps, compile_blocks=compile_blocks)
            except ErfError:
                raise
            except (RuntimeError, AssertionError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                fail(f"{loaded.name} failed on {size} px inputs: {first}")
            results.append(result)
            if not ctx.is_main:
                continue
            extra = {"size": size, "batch_size": batch_size, "seed": seed, "images_source": settings["images"],
                     "grad_checkpointing": grad_checkpointing, "compile": compile_blocks,
                     "world_size": ctx.world_size, "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])}
            metrics = write_model_outputs(out_dir, loaded, result, extra)
            discard_partial(partial_stem(out_dir, loaded.name))
            rows.append({"model": loaded.name, "weights": loaded.weights, "method": method, "size": size,
                         "num_images": result.num_images, "num_skipped": len(result.skipped),
                         "nonfinite_values": result.nonfinite_values, **metrics})
            if result.images_per_pass is not None and result.images_per_pass < batch_size:
                stderr_console.print(f"{loaded.name}: a batch of {batch_size} did not fit in device memory; "
                                     f"ran {result.images_per_pass} image(s) per pass")
            if result.skipped:
                stderr_console.print(f"{loaded.name}: {len(result.skipped)} image(s) skipped "
                                     f"(listed in erf_{loaded.name}.json)")
        if ctx.is_main:
            write_summary(out_dir, rows, results)
            stderr_console.print(f"wrote {out_dir}/erf.png, erf_metrics.csv and per-model erf_<model>.npy/.json")
