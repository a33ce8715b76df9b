"""``hpx-analyze truncation``: kernel truncation sweeps per stage (the paper's Fig. 7).

Writes into ``--out`` (default ``hpx-out/truncation``): ``truncation.csv`` (model, stage,
rel_size, metric, value, weights; ``stage = -1`` rows are the untruncated model),
``truncation.json`` (settings, images used and skipped, notes) and ``truncation.png``
(:class:`hpx_analysis.truncation.TruncationComparison`). Runs under ``torchrun`` too: the
images are sharded across processes, counts and sums are reduced over them, rank 0 writes.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from enum import Enum
from typing import Annotated, Optional

import torch
import typer

from hpx_analysis.erf.analysis import images_label
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.images import labels_available, list_images
from hpx_analysis.io.weights import load_model
from hpx_analysis.kernels import NoLongKernelsError
from hpx_analysis.plotting.files import save_truncation_figure
from hpx_analysis.probe.analysis import PROBE_IMAGES_LABEL, is_probe_source, probe_truncation
from hpx_analysis.truncation import DEFAULT_REL_SIZES, TruncationComparison, truncation_for_model, truncation_settings

from .common import (
    DeviceOption,
    ImagesOption,
    ModelOption,
    NumImagesOption,
    OutOption,
    SeedOption,
    default_out,
    fail,
    model_specs,
    output_folder,
    progress,
    split_list,
    stderr_console,
    user_errors,
)

__all__ = ["truncation", "Shape"]


class Shape(str, Enum):
    """The window outside which taps are zeroed."""

    square = "square"
    disk = "disk"


def truncation(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    rel_sizes: Annotated[
        str,
        typer.Option(
            "--rel-sizes",
            metavar="R[,R...]",
            help="Relative filter sizes (window side / feature-map size), comma-separated. A tap at "
            "offset d from the centre is kept when |d| <= (r*n - 1)/2; r >= K/n (about 2 for "
            "H_px and H_b) keeps the whole kernel.",
        ),
    ] = ",".join(f"{r:g}" for r in DEFAULT_REL_SIZES),
    shape: Annotated[
        Shape,
        typer.Option(
            "--shape",
            help="square (per-axis window, default; the paper's reading) or disk. H_b kernels are "
            "truncated on their 1D token axis either way.",
        ),
    ] = Shape.square,
    stages: Annotated[
        Optional[str],
        typer.Option(
            "--stages",
            metavar="INT[,INT...]",
            help="0-based stage indices to sweep, comma-separated (plots label them S1..S4). "
            "Default: every stage with long kernels.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 16,
    crop_pct: Annotated[
        Optional[float],
        typer.Option("--crop-pct", help="Override the model's evaluation centre-crop fraction (timm config)."),
    ] = None,
    size: Annotated[
        Optional[int],
        typer.Option("--size", min=32, help="Input side in px (default: the model's own evaluation size)."),
    ] = None,
) -> None:
    """For each stage in turn, zero every long-kernel tap outside a centred window and measure the model:
    top-1/top-5 accuracy when the images are an ImageFolder tree with IN-1k synset folders, and always
    top-1 agreement with and mean KL divergence from the untruncated model. Features entering the swept
    stage are computed once per batch and reused for every size."""
    specs = model_specs(model)
    sizes = split_list(rel_sizes, "--rel-sizes", float, "numbers")
    stage_ids = split_list(stages, "--stages", int, "integers")
    results = []
    probe_tables = []
    n_probe = 0
    with user_errors(), ExitStack() as stack:
        shard = dist_context("cpu")
        dev = resolve_device(device.value)
        if dev.type == "cuda" and shard.world_size > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        on_probe = is_probe_source(images)
        if on_probe and shard.world_size > 1:
            fail("--images probe runs in one process (the test split is small)")
        items = [] if on_probe else list_images(images, num_images)
        if shard.is_main and not on_probe:
            for path, reason in items.skipped:
                stderr_console.print(f"[yellow]skipped[/yellow] {path}: {reason}", highlight=False)
        out_dir = stack.enter_context(output_folder(default_out("truncation", out), enabled=shard.is_main))
        labelled, why = (True, None) if on_probe else labels_available(items)
        if shard.is_main and not labelled:
            stderr_console.print(
                f"[yellow]note:[/yellow] no accuracy: {why}; reporting top-1 agreement and KL "
                "divergence from the untruncated model only"
            )
        my_items = shard.take(items)
        for spec in specs:
            torch.manual_seed(seed)
            loaded = load_model(spec, device=dev, seed=seed)
            kwargs = dict(
                labelled=labelled,
                device=dev,
                batch_size=batch_size,
                crop_pct=crop_pct,
                size=size,
                rel_sizes=sizes,
                stages=stage_ids,
                shape=shape.value,
            )
            try:
                if on_probe:
                    result, by_distance = probe_truncation(
                        loaded,
                        rel_sizes=sizes,
                        stages=stage_ids,
                        shape=shape.value,
                        batch_size=batch_size,
                        device=dev,
                        num_images=num_images,
                    )
                    probe_tables.append(by_distance)
                    n_probe = result.n_images
                elif shard.is_main:
                    with progress() as bar:
                        task = bar.add_task(f"truncation {loaded.name}", total=len(items))
                        result = truncation_for_model(
                            loaded, my_items, **kwargs, on_batch=lambda n: bar.advance(task, n * shard.world_size)
                        )
                else:
                    result = truncation_for_model(loaded, my_items, **kwargs)
            except NoLongKernelsError as err:
                if shard.is_main:
                    stderr_console.print(f"[yellow]{loaded.name}:[/yellow] {err}; skipped")
                continue
            results.append(result)
            if shard.is_main:
                for path, reason in result.run["images_skipped_by_this_process"]:
                    stderr_console.print(f"[yellow]skipped[/yellow] {path}: {reason}")
                base = result.table[result.table.stage == -1].set_index("metric").value.round(3).to_dict()
                stderr_console.print(
                    f"{loaded.name} ({loaded.weights}): {result.n_images} images, "
                    f"untruncated {base}, {result.run['seconds']:.1f} s"
                )
        if not results:
            fail(
                "none of the models has long-convolution kernels to truncate (only the HyenaPixel family "
                "has them); nothing written"
            )
        if not shard.is_main:
            return
        comparison = TruncationComparison(
            results,
            truncation_settings(
                rel_sizes=sizes,
                shape=shape.value,
                stages=stage_ids,
                batch_size=batch_size,
                crop_pct=crop_pct,
                size=size,
                seed=seed,
                world_size=shard.world_size,
                images=PROBE_IMAGES_LABEL if on_probe else images_label(images),
                num_images=n_probe if on_probe else len(items),
                labels=labelled,
                no_labels_reason=why,
            ),
        )
        comparison.save(out_dir)
        save_truncation_figure(comparison, out_dir)
        if probe_tables:
            import pandas as pd

            pd.concat(probe_tables, ignore_index=True).to_csv(out_dir / "truncation_probe.csv", index=False)
            stderr_console.print(
                f"wrote {out_dir}/truncation_probe.csv (probe accuracy per stage, rel_size and distance)"
            )
    stderr_console.print(f"wrote {out_dir}/truncation.csv, truncation.json and truncation.png")
