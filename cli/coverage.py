"""``hpx-analyze coverage``: relative feature-map coverage per block (the paper's Fig. 6).

Writes into ``--out`` (default ``hpx-out/coverage``): ``coverage.csv`` (model, stage,
block, mixer, coverage, plus depth, source, diameter, feature_size and weights),
``coverage_channels.csv`` (per-channel values of windowed mixers) and ``coverage.png``
(:class:`hpx_analysis.coverage.CoverageResult`).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from hpx_analysis.coverage import CoverageSettings, coverage_job
from hpx_analysis.io.devices import resolve_device
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
    stderr_console,
    user_errors,
)

__all__ = ["coverage", "Diameter"]


class Diameter(str, Enum):
    """Readings of 'diameter of the non-zero region' (hpx_analysis.coverage.DIAMETER_READINGS)."""

    axis = "axis"
    area = "area"


def coverage(
    model: ModelOption = None,
    out: OutOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Window values below this are set to zero (the paper: 0.05).")
    ] = 0.05,
    diameter: Annotated[
        Diameter,
        typer.Option(
            "--diameter",
            help="Reading of 'diameter of the non-zero region'. axis (the paper's reading, default): "
            "extent of the non-zero taps along the row and column through the kernel centre, "
            "averaged; area: diameter of the disk with the same area as the non-zero "
            "region.",
        ),
    ] = Diameter.axis,
) -> None:
    """Mean over channels of each block's relative feature-map coverage: decay window >= threshold,
    diameter of that region / feature-map size the kernel was built for. Attention counts as 2, a
    convolution as kernel size / feature-map size; H_b windows on their 1D token axis (extent / h*w)."""
    specs = model_specs(model)
    if not 0 < threshold < 1:
        fail(f"--threshold must be between 0 and 1, got {threshold}")
    settings = CoverageSettings(threshold=threshold, reading=diameter.value)
    with user_errors(), output_folder(default_out("coverage", out)) as out_dir, job_hooks(False) as hooks:
        run = RunContext(device=resolve_device(device.value), out_dir=out_dir, seed=seed, command=command_line())
        coverage_job(specs, settings, run, hooks)
    stderr_console.print(f"wrote {out_dir}/coverage.csv, coverage_channels.csv and coverage.png")
