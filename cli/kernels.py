"""``hpx-analyze kernels``: learned long-convolution kernels per stage (the paper's Fig. 4).

Writes into ``--out`` (default ``hpx-out/kernels``), per model: ``kernels_<model>.npz``
(:meth:`hpx_analysis.kernels.KernelResult.save`) and ``kernels_<model>.png``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from hpx_analysis.io.devices import resolve_device
from hpx_analysis.kernels import KernelSettings, kernels_job
from hpx_analysis.settings import RunContext

from .common import (
    DeviceOption,
    ModelOption,
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

__all__ = ["kernels"]


def kernels(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    block: Annotated[
        str,
        typer.Option(
            "--block",
            metavar="INT[,INT...]",
            help="Block shown per stage: one index for every stage or one per stage with long kernels, "
            "comma-separated; negative counts from the end (-1 = last block).",
        ),
    ] = "0",
    channel: Annotated[
        Optional[str],
        typer.Option(
            "--channel",
            metavar="INT[,INT...]",
            help="Hand-picked channel shown next to the mean: one index or one per stage, comma-separated. Default: "
            "the channel with the most energy (largest sum of squared taps) in that block.",
        ),
    ] = None,
    at: Annotated[
        Optional[str],
        typer.Option(
            "--at",
            metavar="ROW,COL",
            help="H_b only (H_px's 2D kernels do not depend on it): output pixel for which the 1D kernel "
            "is wrapped onto each stage's feature map, inside the smallest of them (default each map's "
            "centre; negative counts from the bottom/right, e.g. 0,0 or -1,-1 for corners).",
        ),
    ] = None,
) -> None:
    """Normalized mean kernel weights of each stage's long convolution (after the decay window), and a
    hand-picked channel. H_px: the 2D kernel array itself (K[a,b] weights the input at (i-(a-kh//2),
    j-(b-kw//2)) for output (i,j), so it is point-mirrored w.r.t. the input pixels). H_b: the 1D kernel
    wrapped onto the raster-flattened training feature map for one output pixel (map[r',c'] = weight of
    input pixel (r',c'))."""
    specs = model_specs(model)
    settings = KernelSettings(
        block=split_list(block, "--block", int, "integers"),
        channel=split_list(channel, "--channel", int, "integers"),
        at=split_list(at, "--at", int, "integers (row,col)", length=2),
    )
    with user_errors(), output_folder(default_out("kernels", out)) as out_dir, job_hooks(False) as hooks:
        run = RunContext(device=resolve_device(device.value), out_dir=out_dir, seed=seed, command=command_line())
        written = len(kernels_job(specs, settings, run, hooks))
    if not written:
        fail("none of the models has long-convolution kernels (H_px / H_b); nothing written")
    stderr_console.print(f"wrote kernels_<model>.npz/.png for {written} model(s) to {out_dir}")
