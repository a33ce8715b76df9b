"""``hpx-analyze truncation``: kernel truncation sweeps per stage (the paper's Fig. 7).

Writes into ``--out`` (default ``figures/truncation``): ``truncation.csv`` (model, stage,
rel_size, metric, value, weights; ``stage = -1`` rows are the untruncated model),
``truncation.json`` (settings, images used and skipped, notes) and ``truncation.png``.
Runs under ``torchrun`` too: the images are sharded across processes, counts and sums are
reduced over them, rank 0 writes.
"""
from __future__ import annotations

import json
import os
import time
from typing import Annotated, Optional

import pandas as pd
import torch
import typer

from hpx_analysis.io.batches import ImageBatches
from hpx_analysis.io.images import labels_available, list_images, model_eval_transform
from hpx_analysis.kernels import NoLongKernelsError
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.truncation import DEFAULT_REL_SIZES, swept_stages, truncation_sweep
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.weights import load_model

from .common import (DeviceOption, ImagesOption, ModelOption, NumImagesOption, OutOption, SeedOption,
                     default_out, fail, model_specs, progress, stderr_console, user_errors)
from .kernels import parse_int_list

__all__ = ["truncation", "parse_float_list", "eval_transform"]


def parse_float_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{option} expects numbers separated by commas, got {text!r}")
    if not values:
        fail(f"{option} is empty")
    return values


def eval_transform(model: torch.nn.Module, crop_pct: float | None, size: int | None):
    """The model's timm evaluation transform, optionally at another input side ``size``."""
    if size is None:
        return model_eval_transform(model, crop_pct)
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config(model=model)
    config["input_size"] = (3, size, size)
    if crop_pct is not None:
        if not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        config["crop_pct"] = crop_pct
    return create_transform(**config, is_training=False)


def truncation(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    rel_sizes: Annotated[str, typer.Option(
        "--rel-sizes", help="Relative filter sizes (window side / feature-map size), comma-separated. A tap at "
                            "offset d from the centre is kept when |d| <= (r*n - 1)/2; r >= K/n (about 2 for "
                            "H_px and H_b) keeps the whole kernel.")] = ",".join(f"{r:g}" for r in DEFAULT_REL_SIZES),
    shape: Annotated[str, typer.Option(
        "--shape", help="square (per-axis window, default; the paper's reading) or disk. H_b kernels are "
                        "truncated on their 1D token axis either way.")] = "square",
    stages: Annotated[Optional[str], typer.Option(
        "--stages", help="0-based stage indices to sweep, comma-separated (plots label them S1..S4). "
                         "Default: every stage with long kernels.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 16,
    crop_pct: Annotated[Optional[float], typer.Option(
        "--crop-pct", help="Override the model's evaluation centre-crop fraction (timm config).")] = None,
    size: Annotated[Optional[int], typer.Option(
        "--size", min=32, help="Input side in px (default: the model's own evaluation size).")] = None,
) -> None:
    """For each stage in turn, zero every long-kernel tap outside a centred window and measure the model:
    top-1/top-5 accuracy when the images are an ImageFolder tree with IN-1k synset folders, and always
    top-1 agreement with and mean KL divergence from the untruncated model. Features entering the swept
    stage are computed once per batch and reused for every size."""
    import matplotlib.pyplot as plt

    from hpx_analysis.plotting import plot_truncation

    specs = model_specs(model)
    sizes = parse_float_list(rel_sizes, "--rel-sizes")
    if shape not in ("square", "disk"):
        fail(f"unknown --shape {shape!r}; choose square or disk")
    stage_ids = parse_int_list(stages, "--stages")
    out_dir = default_out("truncation", out)
    tables, records = [], []
    with user_errors():
        shard = dist_context("cpu")
        dev = resolve_device(device)
        if dev.type == "cuda" and shard.world_size > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        items = list_images(images, num_images)
        labelled, why = labels_available(items)
        if shard.is_main and not labelled:
            stderr_console.print(f"[yellow]note:[/yellow] no accuracy: {why}; reporting top-1 agreement and KL "
                                 "divergence from the untruncated model only")
        my_items = shard.take(items)
        for spec in specs:
            torch.manual_seed(seed)
            loaded = load_model(spec, device=dev, seed=seed)
            batches = ImageBatches(my_items, eval_transform(loaded.model, crop_pct, size), batch_size,
                                   with_labels=labelled, device=dev)
            try:
                swept_stages(loaded.model, stage_ids, loaded.name)
            except NoLongKernelsError as err:
                if shard.is_main:
                    stderr_console.print(f"[yellow]{loaded.name}:[/yellow] {err}; skipped")
                continue
            start = time.perf_counter()
            if shard.is_main:
                with progress() as bar:
                    task = bar.add_task(f"truncation {loaded.name}", total=len(items))
                    result = truncation_sweep(loaded.model, batches, name=loaded.name, rel_sizes=sizes,
                                              stages=stage_ids, shape=shape,
                                              on_batch=lambda n: bar.advance(task, n * shard.world_size))
            else:
                result = truncation_sweep(loaded.model, batches, name=loaded.name, rel_sizes=sizes,
                                          stages=stage_ids, shape=shape)
            seconds = time.perf_counter() - start
            tables.append(result.table.assign(weights=loaded.weights))
            records.append({**loaded.as_dict(), "images_evaluated": result.n_images,
                            "images_labelled": result.n_labelled,
                            "images_skipped_by_this_process": [list(s) for s in batches.skipped],
                            "full_kernel_rel_size": {str(k): v for k, v in result.full_rel_size.items()},
                            "notes": result.notes, "seconds": round(seconds, 3)})
            if shard.is_main:
                for path, reason in batches.skipped:
                    stderr_console.print(f"[yellow]skipped[/yellow] {path}: {reason}")
                base = result.table[result.table.stage == -1].set_index("metric").value.round(3).to_dict()
                stderr_console.print(f"{loaded.name} ({loaded.weights}): {result.n_images} images, "
                                     f"untruncated {base}, {seconds:.1f} s")
    if not tables:
        fail("none of the models has long-convolution kernels to truncate (only the HyenaPixel family "
             "has them); nothing written")
    if not shard.is_main:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out_dir / "truncation.csv", index=False)
    settings = {"rel_sizes": sizes, "shape": shape, "stages": stage_ids, "batch_size": batch_size,
                "crop_pct": crop_pct, "size": size, "seed": seed, "world_size": shard.world_size,
                "images": str(images) if images is not None else "bundled scikit-image photographs",
                "num_images": len(items), "labels": labelled, "no_labels_reason": why or None}
    (out_dir / "truncation.json").write_text(json.dumps({"settings": settings, "models": records}, indent=1))
    fig = plot_truncation(table)
    fig.axes[0].set_title(f"{shape} truncation, {len(items)} images", fontsize=9)
    fig.savefig(out_dir / "truncation.png", dpi=150)
    plt.close(fig)
    stderr_console.print(f"wrote {out_dir}/truncation.csv, truncation.json and truncation.png")
