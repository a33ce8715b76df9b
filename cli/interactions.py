"""``hpx-analyze interactions``: what each layer reads for given images.

Per block: the mean interaction distance (in input pixels) of its token mixer and the
interaction maps of a few query points; with ``--rollout`` the maps combined into
input-pixel maps (a heuristic). Writes into ``--out`` (default ``hpx-out/interactions``):
``interactions.csv``, ``interactions_<label>.npz``, ``interactions_distance.png``,
``interactions_maps.png`` (``interactions_rollout.png``) and ``interactions.json``
(:func:`hpx_analysis.interactions.job.run_interactions`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from hpx_analysis.interactions import InteractionSettings, NoMixersError, find_blocks, parse_blocks, parse_maps
from hpx_analysis.interactions.job import run_interactions
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.images import list_images
from hpx_analysis.io.weights import load_model
from hpx_analysis.probe.analysis import ProbeImages, is_probe_source
from hpx_analysis.settings import Hooks, RunContext

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
    model_specs,
    output_folder,
    progress,
    stderr_console,
    user_errors,
)

__all__ = ["interactions"]

DEFAULT_IMAGES = 4


def _settings(size, maps, blocks, queries_sampled, rollout) -> InteractionSettings:
    """The options as settings; a bad value fails with one line (exit status 2)."""
    try:
        return InteractionSettings(
            size=size,
            maps=parse_maps(maps),
            blocks=parse_blocks(blocks),
            queries_sampled=queries_sampled,
            rollout=rollout,
        )
    except ValueError as err:
        fail(str(err).replace("queries_sampled", "--queries-sampled"))


def _images(images: Optional[Path], num_images: Optional[int]):
    if is_probe_source(images):
        return ProbeImages(num_images or DEFAULT_IMAGES)  # each model's own size
    return list_images(images, num_images or DEFAULT_IMAGES)


def interactions(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    size: Annotated[
        int, typer.Option("--size", min=8, help="Input side in px (probe images: the model's own size).")
    ] = 224,
    maps: Annotated[
        str,
        typer.Option(
            "--maps",
            help="Map query points: centre, edge (middle of the left edge), corner (top-left) on each "
            "block's grid, or ROW:COL in input pixels; comma-separated.",
        ),
    ] = "centre,edge,corner",
    blocks: Annotated[
        str, typer.Option("--blocks", help="all, or STAGE.BLOCK,... counted from 0 (e.g. 0.0,3.2).")
    ] = "all",
    queries_sampled: Annotated[
        int,
        typer.Option("--queries-sampled", min=0, help="Query tokens per block for the mean distance (0: all)."),
    ] = 256,
    rollout: Annotated[
        bool, typer.Option("--rollout", help="Also combine the block maps into input-pixel maps (a heuristic).")
    ] = False,
) -> None:
    """Per block, what its token mixer reads: r(i, j) = ||c(i, j)||, the norm of what the mixer carries
    from token j to token i for these images, and the mean interaction distance sum r d / sum r in
    input pixels (default: 4 images, 256 sampled queries per block)."""
    specs = model_specs(model)
    settings = _settings(size, maps, blocks, queries_sampled, rollout)
    with user_errors(), output_folder(default_out("interactions", out)) as out_dir:
        try:
            dev = resolve_device(device.value)
            items = _images(images, num_images)
            loaded = [load_model(spec, device=dev, seed=seed) for spec in specs]
            for m in loaded:  # unknown blocks or models without mixers fail before the work
                find_blocks(m.model, settings.blocks)
            run = RunContext(device=dev, out_dir=out_dir, seed=seed, command=command_line())
            with progress() as bar:
                task = bar.add_task("interactions", total=len(items))
                hooks = Hooks(
                    progress=lambda n: bar.advance(task, n),
                    task=lambda title: bar.reset(task, description=title),
                    log=lambda line: stderr_console.print(f"[yellow]note:[/yellow] {line}", highlight=False),
                )
                torch.manual_seed(seed)
                results = run_interactions(loaded, items, settings, run, hooks)
        except NoMixersError as err:
            fail(str(err))
    for res in results:
        summary = res.to_frame().groupby("stage").mean_distance_px.mean().round(1).tolist()
        stderr_console.print(f"{res.label} ({res.weights}): mean interaction distance per stage (px) {summary}")
    stderr_console.print(f"wrote {out_dir}/interactions.csv, .json, .png and interactions_<label>.npz")
