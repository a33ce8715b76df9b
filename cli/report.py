"""``hpx-analyze report``: the paper's analysis figures (Figs. 2, 4-7) regenerated into one folder.

The work is :func:`hpx_analysis.report.build_report`: it runs every analysis through the
library into ``--out``'s subfolders (``kernels``, ``coverage``, ``erf``, ``truncation``,
``runtime``) and writes ``report.md`` and ``report.json`` from the results in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hpx_analysis import report as rp

from .common import OUT_ROOT, DeviceOption, ImagesOption, SeedOption, command_line, fail, stderr_console, user_errors

__all__ = ["report"]


def report(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Small settings that finish in a few minutes on a 2-core CPU, with a seeded random "
            "init by default (the committed figures/). Without it: the paper's settings "
            "(ERF over 50 images at 1024 px, ...) and published weights when available.",
        ),
    ] = False,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Report folder (its analysis subfolders are replaced); `--out figures` writes the committed report.",
        ),
    ] = OUT_ROOT / "report",
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    model_weights: Annotated[
        Optional[list[str]],
        typer.Option(
            "--model-weights",
            metavar="[NAME=]WEIGHTS",
            help="Weights for every model (WEIGHTS) or for one (NAME=WEIGHTS), repeatable: auto, pretrained, "
            "random or a checkpoint file. Default: random with --quick, auto otherwise.",
        ),
    ] = None,
) -> None:
    """Regenerate the paper's analysis figures (Fig. 2 runtime, Fig. 4 kernels, Fig. 5 ERFs,
    Fig. 6 coverage, Fig. 7 truncation) into one folder with report.md and report.json."""
    settings = rp.QUICK if quick else rp.FULL
    command = command_line()
    with user_errors():
        try:
            manifest, _ = rp.build_report(
                out,
                settings,
                device=device.value,
                seed=seed,
                images=images,
                model_weights=model_weights,
                command=command,
                log=lambda msg: stderr_console.print(f"[bold]{msg}[/bold]"),
            )
        except rp.UnusedModelWeightsError as err:
            fail(
                f"--model-weights names {', '.join(err.names)}, which the report does not use "
                f"(it uses {', '.join(err.known)})"
            )
    stderr_console.print(f"wrote {out}/report.md and report.json ({manifest['total_seconds']:.0f} s)")
