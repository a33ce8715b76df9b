"""``hpx-analyze erf``: effective receptive fields (the paper's Fig. 5), one heatmap per model.

Writes into ``--out`` (default ``hpx-out/erf``): ``erf_<label>.npy`` (raw float64 mean
contribution matrix), ``erf_<label>.json`` (settings, weights, images used and skipped,
non-finite count, metrics, time, versions, device), ``erf_metrics.csv``, ``erf.png`` and
``erf.pdf``. Runs under ``torchrun`` too: images are sharded across ranks, rank 0 writes.

The label is the model name, with a short weights tag when a model is given with several
weights or a folder/glob of checkpoints (:mod:`hpx_analysis.erf.labels`), then ``_s<k>``
per ``--stage``, ``_<layer>`` per ``--layer`` and ``_<size>px`` when ``--size`` lists
several sizes. With several maps per model ``erf.png`` has a row per model and a column
per map; ``erf_sizes.png`` plots the metrics against the size, ``erf_series.png`` against
the checkpoint, ``erf_overlay.png`` shows the maps over ``--overlay``'s image.
"""

from __future__ import annotations

from contextlib import ExitStack
from enum import Enum
from pathlib import Path
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
from hpx_analysis.erf.labels import assign_labels, expand_model_args
from hpx_analysis.erf.metrics import degenerate_warning
from hpx_analysis.erf.unit import ErfUnit
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.images import list_images
from hpx_analysis.io.weights import load_model
from hpx_analysis.models.metaformer import PROBE_IMG_SIZE
from hpx_analysis.plotting.files import save_erf_figure
from hpx_analysis.probe.analysis import PROBE_IMAGES_LABEL, is_probe_source, probe_image_tensors

from .common import (
    INTERRUPTED,
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
    split_list,
    stderr_console,
    user_errors,
)

__all__ = ["erf", "Method", "Precision", "Protocol", "Preprocess", "Metrics"]
DEFAULT_SIZE = 1024


class Method(str, Enum):
    """How contributions are measured (hpx_analysis.erf.METHODS)."""

    grad = "grad"
    saliency = "saliency"
    integrated_gradients = "integrated_gradients"


class Protocol(str, Enum):
    """How the unit and the per-image map are defined (hpx_analysis.erf.unit.PROTOCOLS)."""

    replknet = "replknet"
    bmvc = "bmvc"


class Preprocess(str, Enum):
    """How image files become model inputs (hpx_analysis.erf.analysis.PREPROCESS)."""

    squash = "squash"
    timm_eval = "timm-eval"


class EvenCentre(str, Enum):
    """The centre unit of an even grid."""

    after = "after"
    before = "before"


class Metrics(str, Enum):
    """Which metrics are computed."""

    standard = "standard"
    full = "full"


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
    size: Annotated[
        Optional[str],
        typer.Option(
            "--size",
            help="Side length the images are resized to (px; default 1024, with --preprocess timm-eval the "
            "model's own). A list (224,512,1024) gives one map per size and erf_sizes.png.",
            show_default=False,
        ),
    ] = None,
    stage: Annotated[
        Optional[str],
        typer.Option(
            "--stage",
            help="Stages (timm's forward_intermediates indices), e.g. 0,1,2,3: the ERF of each "
            "stage's centre unit, erf_<label>_s<k>.npy each. Default: the last feature map.",
            show_default=False,
        ),
    ] = None,
    layer: Annotated[
        Optional[list[str]],
        typer.Option(
            "--layer",
            help="A module by its name in named_modules() (NCHW, NHWC or tokens), repeatable: the ERF of "
            "its output's centre unit.",
            show_default=False,
        ),
    ] = None,
    protocol: Annotated[
        Protocol,
        typer.Option(
            "--protocol",
            help="replknet: ReLU of the centre unit summed over channels, ReLU of the input gradient summed "
            "over colours, mean over images. bmvc (Kim et al., BMVC 2023): channel mean at the centre "
            "unit without ReLU, gradient averaged over colours then clamped at 0, normalised to sum 1.",
        ),
    ] = Protocol.replknet,
    preprocess: Annotated[
        Preprocess,
        typer.Option(
            "--preprocess",
            help="squash: resize the whole image to --size; timm-eval: the model's timm data config "
            "(size, crop, interpolation, mean, std).",
        ),
    ] = Preprocess.squash,
    even_centre: Annotated[
        Optional[EvenCentre],
        typer.Option(
            "--even-centre",
            help="Centre unit of an even grid: after = (H//2, W//2), the lower-right of the central 2x2 "
            "(RepLKNet; bmvc on conv maps); before = the upper-left (bmvc on token grids). Default: "
            "the protocol's rule.",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        Metrics,
        typer.Option(
            "--metrics",
            help="full: also the unit's position in input pixels (radial and centre-of-mass metrics "
            "around it), a 2D Gaussian fit, the theoretical receptive field, the ERF/TRF ratio, the "
            "standard-deviation map over images (erf_<label>_std.npy) and each metric's spread across images.",
        ),
    ] = Metrics.standard,
    save_per_image: Annotated[
        bool,
        typer.Option(
            "--save-per-image",
            help="Keep every image's map (erf_<label>_per_image.npz, metrics per image in a CSV); implies "
            "--metrics full, which writes the standard-deviation map (erf_<label>_std.npy) and each "
            "metric's spread across images.",
        ),
    ] = False,
    scale: Annotated[
        str,
        typer.Option("--scale", help="Figure scale: log (RepLKNet's log10(x+1)), linear (SLaK) or power:G (VMamba)."),
    ] = "log",
    cmap: Annotated[str, typer.Option("--cmap", help="Matplotlib colour map of the figures.")] = "RdYlGn",
    overlay: Annotated[
        Optional[Path],
        typer.Option("--overlay", help="An image to draw the ERFs over (erf_overlay.png).", show_default=False),
    ] = None,
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
    feature map, averaged over images: arrays, metrics and a side-by-side heatmap figure.
    Also any stage or layer, the BMVC 2023 protocol, checkpoint series and several sizes."""
    method, precision = method.value, precision.value
    sizes = split_list(size, "--size", int, "sizes in pixels")
    if sizes is None:
        sizes = [None] if preprocess == Preprocess.timm_eval else [DEFAULT_SIZE]
    for s in sizes:
        if s is not None and s < MIN_SIZE:
            fail(f"--size must be at least {MIN_SIZE} px (the models downsample by 32), got {s}")
    if len(set(sizes)) != len(sizes):
        fail("--size lists a size twice")
    stages = split_list(stage, "--stage", int, "stage indices")
    if stages is not None and layer:
        fail("give --stage or --layer, not both")
    if scale != "log":
        from hpx_analysis.plotting.erf import parse_scale

        try:
            parse_scale("replknet" if scale == "log" else scale)
        except ValueError:
            fail(f"--scale must be log, linear or power:G with G > 0, got {scale!r}")
    overlay_image = None
    if overlay is not None:
        from hpx_analysis.io.images import load_rgb

        if not overlay.is_file():
            fail(f"--overlay image not found: {overlay}")
        with user_errors():
            overlay_image = load_rgb(str(overlay))
    even = even_centre.value if even_centre is not None else None
    with user_errors():
        units = [ErfUnit(stage=k, protocol=protocol.value, even=even) for k in stages or []]
        units += [ErfUnit(layer=name, protocol=protocol.value, even=even) for name in layer or []]
        units = units or [ErfUnit(protocol=protocol.value, even=even)]
        runs = expand_model_args(list(model or []))
    specs = model_specs([r.text for r in runs] if runs else None)
    assign_labels(runs, [spec.name for spec in specs])
    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    if ig_steps < 1:
        fail(f"--ig-steps must be at least 1, got {ig_steps}")
    command = command_line()
    with user_errors(), ExitStack() as stack:
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
        out_dir = stack.enter_context(output_folder(default_out("erf", out), enabled=ctx.is_main))
        comparison = ErfComparison()
        many = len(units) > 1 or len(sizes) > 1
        for spec, run in zip(specs, runs):
            torch.manual_seed(seed)
            loaded = load_model(spec, device=dev, seed=seed)
            for map_size in sizes:
                for unit in units:
                    label = run.label + unit.suffix + (f"_{map_size}px" if len(sizes) > 1 else "")
                    result = _one_map(
                        loaded,
                        items,
                        ctx,
                        comparison,
                        batch_size,
                        label=label,
                        unit=unit,
                        size=map_size,
                        device=dev,
                        state_dir=out_dir,
                        seed=seed,
                        method=method,
                        precision=precision,
                        ig_steps=ig_steps,
                        images=images,
                        resume=resume,
                        grad_checkpointing=grad_checkpointing,
                        compile_blocks=compile_blocks,
                        command=command,
                        preprocess=preprocess.value,
                        full_metrics=metrics == Metrics.full or save_per_image,
                        save_per_image=save_per_image,
                    )
                    if run.checkpoint is not None:
                        result.run["series"], result.run["checkpoint"] = run.series, run.checkpoint
                    if many or run.label != loaded.name:
                        result.run["run_label"] = run.label
                    if ctx.is_main:
                        result.save(out_dir)
                        finish_state(out_dir, result)
        if ctx.is_main:
            comparison.save_table(out_dir)
            _figures(comparison, out_dir, units, sizes, scale, cmap, overlay_image)
            stderr_console.print(f"wrote {out_dir}/erf.png, erf_metrics.csv and per-run erf_<label>.npy/.json")


def _one_map(loaded, items, ctx, comparison, batch_size, *, label, size, **kwargs):
    """One map of one model: computed, checked, added to ``comparison`` (saved by the caller)."""
    try:
        result = _run_one(
            loaded,
            items,
            ctx.is_main,
            ctx.distributed,
            ctx.world_size,
            ctx=ctx,
            label=label,
            size=size,
            batch_size=batch_size,
            **kwargs,
        )
    except GradCheckpointingError:
        fail(f"{loaded.name} does not support --grad-checkpointing")
    except KeyboardInterrupt:
        _interrupted(label, kwargs["state_dir"], ctx.is_main)
    except ErfError:
        raise
    except (RuntimeError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        fail(f"{loaded.name} failed on {size or 'its own'} px inputs: {first}")
    comparison.results.append(result)
    if not ctx.is_main:
        return result
    warning = degenerate_warning(result.metrics(), f"the ERF of {label}")
    if warning:
        stderr_console.print(f"warning: {warning}")
    if result.images_per_pass is not None and result.images_per_pass < batch_size:
        stderr_console.print(
            f"{loaded.name}: a batch of {batch_size} did not fit in device memory; "
            f"ran {result.images_per_pass} image(s) per pass"
        )
    if result.skipped:
        stderr_console.print(f"{loaded.name}: {len(result.skipped)} image(s) skipped (listed in erf_{label}.json)")
    return result


def _figures(comparison, out_dir, units, sizes, scale, cmap, overlay) -> None:
    """erf.png/.pdf (side by side, or a grid with several maps per model) and, where they
    apply, erf_sizes.png, erf_series.png and erf_overlay.png."""
    import matplotlib.pyplot as plt

    from hpx_analysis.plotting.erf import plot_erf, plot_erf_grid, plot_erf_series

    lib_scale = "replknet" if scale == "log" else scale
    results = comparison.results

    def write(fig, names):
        try:
            for name in names:
                fig.savefig(out_dir / name, dpi=150)
        finally:
            plt.close(fig)

    if len(units) > 1 or len(sizes) > 1:
        column = "size" if len(units) == 1 else ("stage" if units[0].stage is not None else "layer")
        write(plot_erf_grid(results, column=column, scale=lib_scale, cmap=cmap), ["erf.png", "erf.pdf"])
    elif scale == "log" and cmap == "RdYlGn":
        save_erf_figure(comparison, out_dir)
    else:
        write(plot_erf(results, scale=lib_scale, cmap=cmap), ["erf.png", "erf.pdf"])
    frame = comparison.to_frame()
    hue = "label" if "label" in frame.columns else "model"
    if len(sizes) > 1:
        write(plot_erf_series(frame, "size", hue=hue), ["erf_sizes.png"])
    if "checkpoint" in frame.columns and frame["checkpoint"].notna().sum() > 1:
        series = frame[frame["checkpoint"].notna()]
        write(plot_erf_series(series, "checkpoint", hue="model"), ["erf_series.png"])
    if overlay is not None:
        write(plot_erf(results, scale=lib_scale, cmap=cmap, overlay=overlay), ["erf_overlay.png"])


def _interrupted(name: str, out_dir, is_main: bool):
    """Ctrl-C during a model's ERF: say what was saved and how to continue; exit status 130."""
    if is_main:
        from hpx_analysis.erf.run import partial_files, partial_stem
        from hpx_analysis.erf.state import ErfAccumulator

        try:
            done = sum(ErfAccumulator.load(s).count for s in partial_files(partial_stem(out_dir, name)))
        except (ValueError, OSError):
            done = 0
        saved = f"{done} image(s) of {name} are saved in {out_dir}" if done else f"no image of {name} was finished"
        stderr_console.print(
            f"interrupted: {saved}; run the same command with --resume to continue", soft_wrap=True, highlight=False
        )
    raise typer.Exit(code=INTERRUPTED)


def _run_one(loaded, items, is_main: bool, distributed: bool, world_size: int, **kwargs):
    """:func:`~hpx_analysis.erf.analysis.erf_for_model` with a progress bar on rank 0."""
    if not is_main:
        return erf_for_model(loaded, items, **kwargs)
    with progress() as bar:
        shard_note = f" (rank 0's share of {world_size})" if distributed else ""
        task = bar.add_task(f"ERF {kwargs.get('label') or loaded.name}{shard_note}", total=None)

        def on_start(done: int, todo: int) -> None:
            if done:
                stderr_console.print(f"resuming {loaded.name}: {done} image(s) already done")
            bar.update(task, total=todo)

        return erf_for_model(loaded, items, progress=lambda n: bar.advance(task, n), on_start=on_start, **kwargs)
