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

from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.images import list_images
from hpx_analysis.kernels import NoLongKernelsError
from hpx_analysis.probe.analysis import is_probe_source
from hpx_analysis.settings import RunContext
from hpx_analysis.truncation import DEFAULT_REL_SIZES, TruncationSettings, truncation_job

from .common import (
    DeviceOption,
    ImagesOption,
    ModelOption,
    NumImagesOption,
    OutOption,
    SeedOption,
    command_line,
    default_out,
    fail,
    job_hooks,
    model_specs,
    output_folder,
    split_list,
    stderr_console,
    user_errors,
)

__all__ = ["truncation", "Shape"]


class Shape(str, Enum):
    """The window outside which taps are zeroed."""

    square = "square"
    disk = "disk"


RelSizesOption = Annotated[
    str,
    typer.Option(
        "--rel-sizes",
        metavar="R[,R...]",
        help="Relative filter sizes (window side / feature-map size), comma-separated. A tap at "
        "offset d from the centre is kept when |d| <= (r*n - 1)/2; r >= K/n (about 2 for "
        "H_px and H_b) keeps the whole kernel.",
    ),
]

ShapeOption = Annotated[
    Shape,
    typer.Option(
        "--shape",
        help="square (per-axis window, default; the paper's reading) or disk. H_b kernels are "
        "truncated on their 1D token axis either way.",
    ),
]

StagesOption = Annotated[
    Optional[str],
    typer.Option(
        "--stages",
        metavar="INT[,INT...]",
        help="0-based stage indices to sweep, comma-separated (plots label them S1..S4). "
        "Default: every stage with long kernels.",
    ),
]

CropPctOption = Annotated[
    Optional[float],
    typer.Option("--crop-pct", help="Override the model's evaluation centre-crop fraction (timm config)."),
]

SizeOption = Annotated[
    Optional[int],
    typer.Option("--size", min=32, help="Input side in px (default: the model's own evaluation size)."),
]


def truncation(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    rel_sizes: RelSizesOption = ",".join(f"{r:g}" for r in DEFAULT_REL_SIZES),
    shape: ShapeOption = Shape.square,
    stages: StagesOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 16,
    crop_pct: CropPctOption = None,
    size: SizeOption = None,
) -> None:
    """For each stage in turn, zero every long-kernel tap outside a centred window and measure the model:
    top-1/top-5 accuracy when the images are an ImageFolder tree with IN-1k synset folders, and always
    top-1 agreement with and mean KL divergence from the untruncated model. Features entering the swept
    stage are computed once per batch and reused for every size."""
    specs = model_specs(model)
    settings_kwargs = dict(
        rel_sizes=tuple(split_list(rel_sizes, "--rel-sizes", float, "numbers")),
        shape=shape.value,
        stages=split_list(stages, "--stages", int, "integers"),
        batch_size=batch_size,
        crop_pct=crop_pct,
        size=size,
        num_images=num_images,
    )
    with user_errors(), ExitStack() as stack:
        settings = TruncationSettings(**settings_kwargs)
        shard = dist_context("cpu")
        dev = resolve_device(device.value)
        if dev.type == "cuda" and shard.world_size > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if is_probe_source(images) and shard.world_size > 1:
            fail("--images probe runs in one process (the test split is small)")
        if not is_probe_source(images):
            list_images(images, 1)  # a missing or empty folder fails before the output folder is touched
        out_dir = stack.enter_context(output_folder(default_out("truncation", out), enabled=shard.is_main))
        run = RunContext(device=dev, dist=shard, out_dir=out_dir, seed=seed, command=command_line())
        hooks = stack.enter_context(job_hooks(show_progress=shard.is_main and not is_probe_source(images)))
        try:
            comparison = truncation_job(specs, images, settings, run, hooks)
        except NoLongKernelsError as err:
            fail(str(err))
    if shard.is_main:
        probe = ", truncation_probe.csv" if comparison.by_distance is not None else ""
        stderr_console.print(f"wrote {out_dir}/truncation.csv, truncation.json{probe} and truncation.png")
