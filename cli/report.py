"""``hpx-analyze report``: the paper's analysis figures (Figs. 2, 4-7) regenerated into one folder.

Runs the ``kernels``, ``coverage``, ``erf``, ``truncation`` and ``runtime`` commands (their own
code writes their files) into ``--out``'s subfolders of the same names, then writes
``report.md`` (each figure beside its key numbers and how it was made) and ``report.json``
(settings, models, weights, images, device, versions, time per section).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Callable, Optional

import torch
import typer

from hpx_analysis import report as rp

from .common import DeviceOption, ImagesOption, SeedOption, fail, stderr_console, user_errors

__all__ = ["report", "build_report"]


def _random_init_models(out: Path) -> list[str]:
    """Canonical names of the models whose recorded weights are a random init."""
    import numpy as np
    import pandas as pd

    names: dict[str, str] = {}
    for csv in (out / "erf" / "erf_metrics.csv", out / "coverage" / "coverage.csv", out / "truncation" / "truncation.csv"):
        if csv.is_file():
            names.update(rp.weights_by_model(pd.read_csv(csv)))
    for npz in sorted((out / "kernels").glob("kernels_*.npz")):
        data = np.load(npz)
        names[str(data["model"])] = str(data["weights"])
    return sorted(m for m, w in names.items() if w.startswith("random init"))


def build_report(out: Path, settings: rp.ReportSettings, *, device: str = "auto", seed: int = 0,
                 images: Path | None = None, model_weights: list[str] | None = None,
                 command: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Regenerate the report into ``out`` (its analysis subfolders are replaced); returns the
    manifest written to ``report.json``. Errors a user can cause end in ``typer.Exit``."""
    from hpx_analysis.io.devices import device_description
    from hpx_analysis.io.devices import resolve_device

    from .coverage import coverage
    from .erf import erf
    from .kernels import kernels
    from .runtime import runtime
    from .truncation import truncation

    log = log or (lambda msg: stderr_console.print(msg))
    with user_errors():
        choose = rp.weights_chooser(settings.weights, model_weights)
        dev = resolve_device(device)
        if images is not None and not Path(images).is_dir():
            fail(f"image folder not found: {images}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for section in rp.SECTIONS:
        if (out / section).exists():
            shutil.rmtree(out / section)

    def specs(section: str) -> list[str]:
        return [choose(alias) for alias in rp.SECTION_MODELS[section]]

    s = settings
    runs = {
        "kernels": lambda d: kernels(model=specs("kernels"), out=d, device=str(dev), seed=seed),
        "coverage": lambda d: coverage(model=specs("coverage"), out=d, device=str(dev), seed=seed),
        "erf": lambda d: erf(model=specs("erf"), out=d, device=str(dev), seed=seed, images=images,
                             num_images=s.erf_num_images, size=s.erf_size),
        "truncation": lambda d: truncation(
            model=specs("truncation"), out=d, device=str(dev), seed=seed, images=images,
            num_images=s.truncation_num_images, rel_sizes=",".join(f"{r:g}" for r in s.truncation_rel_sizes),
            batch_size=s.truncation_batch_size),
        "runtime": lambda d: runtime(
            resolutions=None if s.runtime_resolutions is None else ",".join(map(str, s.runtime_resolutions)),
            mode=s.runtime_mode, device=str(dev), repeats=s.runtime_repeats, warmup=s.runtime_warmup,
            out=d, seed=seed),
    }
    seconds: dict[str, float] = {}
    start_all = time.perf_counter()
    for section in rp.SECTIONS:
        log(f"[bold]report:[/bold] {section} (Fig. {rp.FIGURES[section]})")
        start = time.perf_counter()
        runs[section](out / section)
        seconds[section] = round(time.perf_counter() - start, 2)
    manifest = {
        "settings": s.as_dict(),
        "command": command or "hpx-analyze report",
        "sections": list(rp.SECTIONS),
        "models": {sec: specs(sec) for sec in rp.SECTIONS if rp.SECTION_MODELS[sec]},
        "random_init_models": _random_init_models(out),
        "images": str(images) if images is not None else "bundled scikit-image photographs",
        "seed": seed,
        "device": str(dev),
        "device_description": device_description(dev),
        "threads": torch.get_num_threads(),
        "versions": rp.versions(),
        "seconds": seconds,
        "total_seconds": round(time.perf_counter() - start_all, 2),
    }
    rp.write_manifest(out, manifest)
    rp.write_report_md(out, manifest)
    return manifest


def report(
    quick: Annotated[bool, typer.Option(
        "--quick", help="Small settings that finish in a few minutes on a 2-core CPU, with a seeded random "
                        "init by default (the committed figures/). Without it: the paper's settings "
                        "(ERF over 50 images at 1024 px, ...) and published weights when available.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (its analysis subfolders are "
                                                           "replaced).")] = Path("figures"),
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    images: ImagesOption = None,
    model_weights: Annotated[Optional[list[str]], typer.Option(
        "--model-weights", metavar="[NAME=]WEIGHTS",
        help="Weights for every model (WEIGHTS) or for one (NAME=WEIGHTS), repeatable: auto, pretrained, "
             "random or a checkpoint file. Default: random with --quick, auto otherwise.")] = None,
) -> None:
    """Regenerate the paper's analysis figures (Fig. 2 runtime, Fig. 4 kernels, Fig. 5 ERFs,
    Fig. 6 coverage, Fig. 7 truncation) into one folder with report.md and report.json."""
    settings = rp.QUICK if quick else rp.FULL
    command = " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
    manifest = build_report(out, settings, device=device, seed=seed, images=images, model_weights=model_weights,
                            command=command)
    stderr_console.print(f"wrote {out}/report.md and report.json ({manifest['total_seconds']:.0f} s)")
