"""``hpx-analyze erf``: effective receptive fields (the paper's Fig. 5), one heatmap per model.

Writes into ``--out`` (default ``hpx-out/erf``): ``erf_<model>.npy`` (raw float64 mean
contribution matrix), ``erf_<model>.json`` (settings, weights, images used and skipped,
non-finite count, metrics, time, versions, device), ``erf_metrics.csv``, ``erf.png`` and
``erf.pdf``. Runs under ``torchrun`` too: images are sharded across ranks, rank 0 writes.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import torch
import typer

from hpx_analysis.erf import ErfComparison, ErfError
from hpx_analysis.erf.analysis import (
    CPU_BATCH_SIZE,
    CUDA_BATCH_SIZE,
    DEFAULT_NUM_IMAGES,
    MIN_SIZE,
    GradCheckpointingError,
    default_batch_size,
    erf_for_model,
    finish_state,
)
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.images import list_images
from hpx_analysis.io.weights import load_model
from hpx_analysis.models.metaformer import PROBE_IMG_SIZE
from hpx_analysis.plotting.files import save_erf_figure
from hpx_analysis.probe.analysis import PROBE_IMAGES_LABEL, is_probe_source, probe_image_tensors

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
    progress,
    stderr_console,
    user_errors,
)

__all__ = ["erf", "Method", "Precision"]


class Method(str, Enum):
    """How contributions are measured (hpx_analysis.erf.METHODS)."""

    grad = "grad"
    saliency = "saliency"
    integrated_gradients = "integrated_gradients"


class Precision(str, Enum):
    """Numerics of the passes (hpx_analysis.erf.PRECISIONS)."""

    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"
    fp16 = "fp16"


def erf(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    size: Annotated[int, typer.Option("--size", help="Side length the images are resized to (px).")] = 1024,
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            "--batch-size",
            help="Images per forward/backward pass (exact: same matrix as one at a time). Default: "
            f"{CPU_BATCH_SIZE} on a CPU, {CUDA_BATCH_SIZE} on CUDA. When the GPU runs out of "
            "memory, the pass is split in halves until it fits.",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        Method,
        typer.Option(
            "--method", help="grad (Luo et al./RepLKNet protocol), saliency or integrated_gradients (captum)."
        ),
    ] = Method.grad,
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision",
            help="fp32 (full float32), or tf32 products and "
            "convolutions, or bf16/fp16 autocast (CUDA only; "
            "the deviation from fp32 is recorded).",
        ),
    ] = Precision.fp32,
    ig_steps: Annotated[int, typer.Option("--ig-steps", help="Integration steps for integrated_gradients.")] = 32,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its partial accumulation in --out.")
    ] = False,
    grad_checkpointing: Annotated[
        bool,
        typer.Option(
            "--grad-checkpointing",
            help="Recompute activations in the backward pass (timm's "
            "set_grad_checkpointing): far less memory for large batches or "
            "sizes, about 1.5x the time; same matrix.",
        ),
    ] = False,
    compile_blocks: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="Run the model's repeated blocks through torch.compile: faster and leaner on a GPU "
            "for many images, after a minute or more of compiling the first time; slower on "
            "CPUs. Same matrix up to float32 rounding.",
        ),
    ] = False,
) -> None:
    """Effective receptive fields (Luo et al. / RepLKNet protocol) of the centre unit of the last
    feature map, averaged over images: arrays, metrics and a side-by-side heatmap figure."""
    specs = model_specs(model)
    method, precision = method.value, precision.value
    if size < MIN_SIZE:
        fail(f"--size must be at least {MIN_SIZE} px (the models downsample by 32), got {size}")
    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    if ig_steps < 1:
        fail(f"--ig-steps must be at least 1, got {ig_steps}")
    command = command_line()
    with user_errors():
        dev = resolve_device(device.value)
        if precision != "fp32" and dev.type != "cuda":
            fail(f"--precision {precision} needs CUDA; on {dev.type} use fp32")
        ctx = dist_context(dev)
        batch_size = batch_size or default_batch_size(dev)
        if dev.type == "cuda" and ctx.distributed:
            dev = torch.device("cuda", torch.cuda.current_device())
        wanted = num_images if num_images is not None else DEFAULT_NUM_IMAGES
        if is_probe_source(images):
            # the probe test split: normalised 64 px tensors, read at their own size
            items, size = probe_image_tensors(wanted), PROBE_IMG_SIZE
            images = PROBE_IMAGES_LABEL
        else:
            items = list_images(images, wanted)
        if ctx.is_main and len(items) < wanted:
            stderr_console.print(f"note: only {len(items)} image(s) available, asked for {wanted}")
        out_dir = default_out("erf", out)
        if ctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        comparison = ErfComparison()
        for spec in specs:
            torch.manual_seed(seed)
            loaded = load_model(spec, device=dev, seed=seed)
            kwargs = dict(
                size=size,
                seed=seed,
                method=method,
                precision=precision,
                ig_steps=ig_steps,
                images=images,
                batch_size=batch_size,
                device=dev,
                state_dir=out_dir,
                resume=resume,
                ctx=ctx,
                grad_checkpointing=grad_checkpointing,
                compile_blocks=compile_blocks,
                command=command,
            )
            try:
                result = _run_one(loaded, items, ctx.is_main, ctx.distributed, ctx.world_size, **kwargs)
            except GradCheckpointingError:
                fail(f"{loaded.name} does not support --grad-checkpointing")
            except ErfError:
                raise
            except (RuntimeError, AssertionError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                fail(f"{loaded.name} failed on {size} px inputs: {first}")
            comparison.results.append(result)
            if not ctx.is_main:
                continue
            result.save(out_dir)
            finish_state(out_dir, result)
            if result.images_per_pass is not None and result.images_per_pass < batch_size:
                stderr_console.print(
                    f"{loaded.name}: a batch of {batch_size} did not fit in device memory; "
                    f"ran {result.images_per_pass} image(s) per pass"
                )
            if result.skipped:
                stderr_console.print(
                    f"{loaded.name}: {len(result.skipped)} image(s) skipped (listed in erf_{loaded.name}.json)"
                )
        if ctx.is_main:
            comparison.save_table(out_dir)
            save_erf_figure(comparison, out_dir)
            stderr_console.print(f"wrote {out_dir}/erf.png, erf_metrics.csv and per-model erf_<model>.npy/.json")


def _run_one(loaded, items, is_main: bool, distributed: bool, world_size: int, **kwargs):
    """:func:`~hpx_analysis.erf.analysis.erf_for_model` with a progress bar on rank 0."""
    if not is_main:
        return erf_for_model(loaded, items, **kwargs)
    with progress() as bar:
        shard_note = f" (rank 0's share of {world_size})" if distributed else ""
        task = bar.add_task(f"ERF {loaded.name}{shard_note}", total=None)

        def on_start(done: int, todo: int) -> None:
            if done:
                stderr_console.print(f"resuming {loaded.name}: {done} image(s) already done")
            bar.update(task, total=todo)

        return erf_for_model(loaded, items, progress=lambda n: bar.advance(task, n), on_start=on_start, **kwargs)
