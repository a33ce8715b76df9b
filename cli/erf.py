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
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from hpx_analysis.erf.job import ErfInterrupted, erf_job
from hpx_analysis.erf.labels import RunSpec, assign_labels, expand_model_args
from hpx_analysis.erf.settings import (
    CPU_BATCH_SIZE,
    CUDA_BATCH_SIZE,
    DEFAULT_NUM_IMAGES,
    MIN_SIZE,
    ErfFigureSettings,
    ErfSettings,
    images_label,
    map_grid,
)
from hpx_analysis.erf.unit import ErfUnit
from hpx_analysis.execution.distributed import dist_context
from hpx_analysis.io.devices import resolve_device
from hpx_analysis.io.images import list_images
from hpx_analysis.io.weights import ModelSpec, parse_model_spec
from hpx_analysis.probe.analysis import PROBE_IMAGES_LABEL, ProbeImages, is_probe_source
from hpx_analysis.settings import Hooks, RunContext

from .common import (
    INTERRUPTED,
    Device,
    DeviceOption,
    ImagesOption,
    ModelOption,
    NumImagesOption,
    OutOption,
    SeedOption,
    command_line,
    default_out,
    fail,
    output_folder,
    progress,
    split_list,
    stderr_console,
    stop_progress,
    user_errors,
)

__all__ = ["erf", "Method", "Precision", "Protocol", "Preprocess", "Metrics"]
DEFAULT_SIZE = 1024


class Method(str, Enum):
    """How contributions are measured (hpx_analysis.erf.settings.METHODS)."""

    grad = "grad"
    saliency = "saliency"
    integrated_gradients = "integrated_gradients"


class Protocol(str, Enum):
    """How the unit and the per-image map are defined (hpx_analysis.erf.unit.PROTOCOLS)."""

    replknet = "replknet"
    bmvc = "bmvc"


class Preprocess(str, Enum):
    """How image files become model inputs (hpx_analysis.erf.settings.PREPROCESS)."""

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
    """Numerics of the passes (hpx_analysis.erf.settings.PRECISIONS)."""

    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"
    fp16 = "fp16"


SizeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--size",
        help="Side length the images are resized to (px; default 1024, with --preprocess timm-eval the "
        "model's own). A list (224,512,1024) gives one map per size and erf_sizes.png.",
        show_default=False,
    ),
]

StageOpt = Annotated[
    Optional[str],
    typer.Option(
        "--stage",
        help="Stages (timm's forward_intermediates indices), e.g. 0,1,2,3: the ERF of each "
        "stage's centre unit, erf_<label>_s<k>.npy each. Default: the last feature map.",
        show_default=False,
    ),
]

LayerOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--layer",
        help="A module by its name in named_modules() (NCHW, NHWC or tokens), repeatable: the ERF of "
        "its output's centre unit.",
        show_default=False,
    ),
]

ProtocolOpt = Annotated[
    Protocol,
    typer.Option(
        "--protocol",
        help="replknet: ReLU of the centre unit summed over channels, ReLU of the input gradient summed "
        "over colours, mean over images. bmvc (Kim et al., BMVC 2023): channel mean at the centre "
        "unit without ReLU, gradient averaged over colours then clamped at 0, normalised to sum 1.",
    ),
]

PreprocessOpt = Annotated[
    Preprocess,
    typer.Option(
        "--preprocess",
        help="squash: resize the whole image to --size; timm-eval: the model's timm data config "
        "(size, crop, interpolation, mean, std).",
    ),
]

EvenCentreOpt = Annotated[
    Optional[EvenCentre],
    typer.Option(
        "--even-centre",
        help="Centre unit of an even grid: after = (H//2, W//2), the lower-right of the central 2x2 "
        "(RepLKNet; bmvc on conv maps); before = the upper-left (bmvc on token grids). Default: "
        "the protocol's rule.",
        show_default=False,
    ),
]

MetricsOpt = Annotated[
    Metrics,
    typer.Option(
        "--metrics",
        help="full: also a 2D Gaussian fit, the theoretical receptive field, the ERF/TRF ratio, the "
        "standard-deviation map over images (erf_<label>_std.npy) and each metric's spread across images "
        "(every run records the unit's position in input pixels).",
    ),
]

SavePerImageOpt = Annotated[
    bool,
    typer.Option(
        "--save-per-image",
        help="Keep every image's map (erf_<label>_per_image.npz, metrics per image in a CSV); implies "
        "--metrics full, which writes the standard-deviation map (erf_<label>_std.npy) and each "
        "metric's spread across images.",
    ),
]

ScaleOpt = Annotated[
    str,
    typer.Option("--scale", help="Figure scale: log (RepLKNet's log10(x+1)), linear (SLaK) or power:G (VMamba)."),
]

CmapOpt = Annotated[str, typer.Option("--cmap", help="Matplotlib colour map of the figures.")]

OverlayOpt = Annotated[
    Optional[Path],
    typer.Option("--overlay", help="An image to draw the ERFs over (erf_overlay.png).", show_default=False),
]

BatchSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        help="Images per forward/backward pass (exact: same matrix as one at a time). Default: "
        f"{CPU_BATCH_SIZE} on a CPU, {CUDA_BATCH_SIZE} on CUDA. When the GPU runs out of "
        "memory, the pass is split in halves until it fits.",
        show_default=False,
    ),
]

MethodOpt = Annotated[
    Method,
    typer.Option("--method", help="grad (Luo et al./RepLKNet protocol), saliency or integrated_gradients (captum)."),
]

PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="fp32 (full float32), or tf32 products and "
        "convolutions, or bf16/fp16 autocast (CUDA only; "
        "the deviation from fp32 is recorded).",
    ),
]

IgStepsOpt = Annotated[int, typer.Option("--ig-steps", help="Integration steps for integrated_gradients.")]

ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run from its partial accumulation in --out.")
]

GradCheckpointingOpt = Annotated[
    bool,
    typer.Option(
        "--grad-checkpointing",
        help="Recompute activations in the backward pass (timm's "
        "set_grad_checkpointing): far less memory for large batches or "
        "sizes, about 1.5x the time; same matrix.",
    ),
]

CompileBlocksOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="Run the model's repeated blocks through torch.compile: faster and leaner on a GPU "
        "for many images, after a minute or more of compiling the first time; slower on "
        "CPUs. Same matrix up to float32 rounding.",
    ),
]


def erf(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    num_images: NumImagesOption = None,
    size: SizeOpt = None,
    stage: StageOpt = None,
    layer: LayerOpt = None,
    protocol: ProtocolOpt = Protocol.replknet,
    preprocess: PreprocessOpt = Preprocess.squash,
    even_centre: EvenCentreOpt = None,
    metrics: MetricsOpt = Metrics.standard,
    save_per_image: SavePerImageOpt = False,
    scale: ScaleOpt = "log",
    cmap: CmapOpt = "RdYlGn",
    overlay: OverlayOpt = None,
    batch_size: BatchSizeOpt = None,
    method: MethodOpt = Method.grad,
    precision: PrecisionOpt = Precision.fp32,
    ig_steps: IgStepsOpt = 32,
    resume: ResumeOpt = False,
    grad_checkpointing: GradCheckpointingOpt = False,
    compile_blocks: CompileBlocksOpt = False,
) -> None:
    """Effective receptive fields (Luo et al. / RepLKNet protocol) of the centre unit of the last
    feature map, averaged over images: arrays, metrics and a side-by-side heatmap figure.
    Also any stage or layer, the BMVC 2023 protocol, checkpoint series and several sizes."""
    sizes = _sizes(size, preprocess)
    units = _units(stage, layer, protocol, even_centre)
    figures = _figure_settings(scale, cmap, overlay)
    runs = _model_runs(model)
    _check_counts(batch_size, ig_steps)
    with user_errors(), ExitStack() as stack:
        run = _run_context(device, seed, resume, precision.value)
        items, label, probe_sizes = _inputs(images, num_images, size, run)
        options = (method, precision, ig_steps, preprocess, batch_size, grad_checkpointing, compile_blocks)
        base = _settings(*options, metrics, save_per_image).replace(images=label)
        out_dir = stack.enter_context(output_folder(default_out("erf", out), enabled=run.is_main))
        run = replace(run, out_dir=out_dir)
        bar = progress() if run.is_main else None  # started by the first map (_hooks)
        if bar is not None:
            stack.callback(stop_progress, bar)
        try:
            erf_job(runs, items, map_grid(base, probe_sizes or sizes, units), run, _hooks(bar), figures)
        except ErfInterrupted as stop:
            _interrupted(stop, run.is_main)
        if run.is_main:
            stderr_console.print(f"wrote {out_dir}/erf.png, erf_metrics.csv and per-run erf_<label>.npy/.json")


def _settings(
    method: Method,
    precision: Precision,
    ig_steps: int,
    preprocess: Preprocess,
    batch_size: int | None,
    grad_checkpointing: bool,
    compile_blocks: bool,
    metrics: Metrics,
    save_per_image: bool,
) -> ErfSettings:
    """The options that change the maps, as the settings every map shares."""
    return ErfSettings(
        method=method.value,
        precision=precision.value,
        ig_steps=ig_steps,
        preprocess=preprocess.value,
        batch_size=batch_size,
        grad_checkpointing=grad_checkpointing,
        compile_blocks=compile_blocks,
        full_metrics=metrics == Metrics.full or save_per_image,
        save_per_image=save_per_image,
    )


def _sizes(size: str | None, preprocess: Preprocess) -> list[int | None]:
    """The ``--size`` list, checked (default: 1024, or the model's own with timm-eval)."""
    sizes = split_list(size, "--size", int, "sizes in pixels")
    if sizes is None:
        return [None] if preprocess == Preprocess.timm_eval else [DEFAULT_SIZE]
    for s in sizes:
        if s < MIN_SIZE:
            fail(f"--size must be at least {MIN_SIZE} px (the models downsample by 32), got {s}")
    if len(set(sizes)) != len(sizes):
        fail("--size lists a size twice")
    return sizes


def _units(stage: str | None, layer: list[str] | None, protocol: Protocol, even_centre) -> list[ErfUnit]:
    """The output units of ``--stage`` / ``--layer`` (default: the last feature map's)."""
    stages = split_list(stage, "--stage", int, "stage indices")
    if stages is not None and layer:
        fail("give --stage or --layer, not both")
    for option, values in (("--stage", stages or []), ("--layer", layer or [])):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            fail(f"{option} lists {', '.join(repeated)} more than once; give each once")
    even = even_centre.value if even_centre is not None else None
    with user_errors():
        units = [ErfUnit(stage=k, protocol=protocol.value, even=even) for k in stages or []]
        units += [ErfUnit(layer=name, protocol=protocol.value, even=even) for name in layer or []]
        return units or [ErfUnit(protocol=protocol.value, even=even)]


def _figure_settings(scale: str, cmap: str, overlay: Path | None) -> ErfFigureSettings:
    """``--scale``, ``--cmap`` and ``--overlay``, checked (the overlay image must load)."""
    from hpx_analysis.plotting.erf import check_cmap

    figures = ErfFigureSettings(scale=scale, cmap=cmap, overlay=overlay)
    try:
        check_cmap(cmap)
    except ValueError as err:
        fail(f"--cmap: {err}")
    if scale != "log":
        from hpx_analysis.plotting.erf import parse_scale

        try:
            parse_scale(figures.plot_scale)
        except ValueError:
            fail(f"--scale must be log, linear or power:G with G > 0, got {scale!r}")
    if overlay is not None:
        from hpx_analysis.io.images import load_rgb

        if not overlay.is_file():
            fail(f"--overlay image not found: {overlay}")
        with user_errors():
            load_rgb(str(overlay))
    return figures


def _model_runs(model: list[str] | None) -> list[RunSpec]:
    """The ``--model`` runs (folders and globs expanded into checkpoint series), labelled; a
    run given twice (the same model and weights) is computed once, with a note."""
    if not model:
        fail("no model given (use --model NAME[=WEIGHTS])")
    with user_errors():
        runs = expand_model_args(list(model))
        specs = [parse_model_spec(run.text) for run in runs]
    unique: dict[ModelSpec, RunSpec] = {}
    for spec, run in zip(specs, runs):
        if spec not in unique and specs.count(spec) > 1:
            stderr_console.print(f"note: {spec.name} ({spec.weights}) given {specs.count(spec)} times; analysed once")
        unique.setdefault(spec, run)
    runs = assign_labels(list(unique.values()), [spec.name for spec in unique])
    return [RunSpec(str(spec), run.series, run.checkpoint, run.label) for spec, run in zip(unique, runs)]


def _check_counts(batch_size: int | None, ig_steps: int) -> None:
    if batch_size is not None and batch_size < 1:
        fail(f"--batch-size must be at least 1, got {batch_size}")
    if ig_steps < 1:
        fail(f"--ig-steps must be at least 1, got {ig_steps}")


def _run_context(device: Device, seed: int, resume: bool, precision: str) -> RunContext:
    """The device (one GPU per process under torchrun), the process group, seed and command line."""
    dev = resolve_device(device.value)
    if precision != "fp32" and dev.type != "cuda":
        fail(f"--precision {precision} needs CUDA; on {dev.type} use fp32")
    ctx = dist_context(dev)
    if dev.type == "cuda" and ctx.distributed:
        dev = torch.device("cuda", torch.cuda.current_device())
    return RunContext(device=dev, dist=ctx, resume=resume, seed=seed, command=command_line())


def _inputs(images, num_images: int | None, size: str | None, run: RunContext) -> tuple[list, str, list | None]:
    """The inputs, how they are named, and for the probe test split its sizes: it is rendered
    per model at the model's own size (64 px, 128 px for the two-stage probes), so ``--size``
    is refused there. The shortfall note is printed only when ``--num-images`` asked for more
    than there are."""
    wanted = num_images if num_images is not None else DEFAULT_NUM_IMAGES
    sizes = None
    if is_probe_source(images):
        if size is not None:
            fail(f"--images {images} is the probe task's test split, rendered at each model's own size; "
                 f"--size does not apply (got {size}; leave it out)")  # fmt: skip
        items, label, sizes = ProbeImages(wanted), PROBE_IMAGES_LABEL, [None]
    else:
        items, label = list_images(images, wanted), images_label(images)
    if run.is_main and num_images is not None and len(items) < wanted:
        stderr_console.print(f"note: only {len(items)} image(s) available, asked for {wanted}")
    return items, label, sizes


def _hooks(bar) -> Hooks:
    """A progress bar task per map and notes on stderr (rank 0; other ranks stay quiet)."""
    if bar is None:
        return Hooks()
    current: dict = {}

    def task(title: str) -> None:
        bar.start()  # once the checks have passed: a bad option leaves no empty bar behind
        current["title"], current["task"] = title, bar.add_task(title, total=None)

    def on_start(done: int, todo: int) -> None:
        if done:
            stderr_console.print(f"resuming {current['title'].removeprefix('ERF ')}: {done} image(s) already done")
        bar.update(current["task"], total=todo)

    def log(line: str) -> None:
        stderr_console.print(line)

    return Hooks(progress=lambda n: bar.advance(current["task"], n), on_start=on_start, log=log, task=task)


def _interrupted(stop: ErfInterrupted, is_main: bool):
    """Ctrl-C during a map: say what was saved and how to continue; exit status 130."""
    if is_main:
        name = stop.label
        saved = (
            f"{stop.saved} image(s) of {name} are saved in {stop.out_dir}"
            if stop.saved
            else f"no image of {name} was finished"
        )
        stderr_console.print(
            f"interrupted: {saved}; run the same command with --resume to continue", soft_wrap=True, highlight=False
        )
    raise typer.Exit(code=INTERRUPTED)
