"""The report built in memory: every section's analysis run through the library, each result
saved into its section folder, then ``report.md`` and ``report.json`` written from the results.

Every input (models, weights files, image folder, device) is checked before anything is
written; the report is then built in a staging folder inside ``out`` (under the folder's
lock) and swapped in only when it is complete, so a failing or interrupted run leaves the
previous report as it was."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..settings import Hooks, RunContext
from .manifest import write_manifest
from .markdown import write_report_md
from .sections import SECTION_TABLE
from .settings import ReportSettings, weights_chooser

__all__ = ["build_report", "random_init_models", "run_section", "section_specs"]

_STAGING, _OLD = ".report-new-", ".report-old-"


def random_init_models(results: dict, table: dict | None = None) -> list[str]:
    """Canonical names of the models whose weights are a random init, over every section.

    Args:
        results: section -> its result.
        table: the sections (default :data:`~hpx_analysis.report.sections.SECTION_TABLE`).

    Returns:
        list[str]: the names, sorted.
    """
    table = SECTION_TABLE if table is None else table
    weights: dict[str, str] = {}
    for section, result in results.items():
        if table[section].weights is not None:
            weights.update(table[section].weights(result))
    return sorted(m for m, w in weights.items() if w.startswith("random init"))


def run_section(section: str, specs: list[str], settings: ReportSettings, run: RunContext, images: Path | None):
    """Compute one section's result (its files and figures written into ``run.out_dir``).

    Args:
        section: a name in :data:`~hpx_analysis.report.sections.SECTION_TABLE`.
        specs: the section's model specs.
        settings: the report's settings (the section's own are made from them).
        run: device, seed, command and the section's folder.
        images: the image folder (None: the bundled photographs).

    Returns:
        The section job's result.

    Raises:
        ValueError: an unknown section.
    """
    if section not in SECTION_TABLE:
        raise ValueError(f"unknown report section {section!r}; the sections are {', '.join(SECTION_TABLE)}")
    entry = SECTION_TABLE[section]
    return entry.job(specs, images, entry.settings(settings), run, Hooks())


def section_specs(settings: ReportSettings, model_weights: list[str] | None) -> dict[str, list[str]]:
    """Each section's model specs (``NAME=WEIGHTS``).

    Args:
        settings: the report's settings (their default weights).
        model_weights: the ``--model-weights`` values.

    Returns:
        dict[str, list[str]]: section -> its specs.
    """
    choose = weights_chooser(settings.weights, model_weights)
    # a section with weights of its own takes only the per-model --model-weights
    per_model = [w for w in model_weights or () if "=" in w]
    specs = {}
    for name, entry in SECTION_TABLE.items():
        pick = choose if entry.own_weights is None else weights_chooser(entry.own_weights, per_model)
        specs[name] = [pick(alias) for alias in entry.models]
    return specs


def build_report(
    out: str | Path,
    settings: ReportSettings,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    images: str | Path | None = None,
    model_weights: list[str] | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[dict, dict]:
    """Regenerate the report into ``out`` (its section folders and report files are replaced
    once the new report is complete; other files in ``out`` are left alone).

    Args:
        out: the report folder.
        settings: :data:`~hpx_analysis.report.QUICK`, :data:`~hpx_analysis.report.FULL` or others.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a device.
        seed: the seed of random inits and sampling.
        images: an image folder (None: the bundled photographs).
        model_weights: ``--model-weights`` values (``WEIGHTS`` or ``NAME=WEIGHTS``).
        command: the command line recorded (default ``hpx-analyze report``).
        log: called with a line as each section starts (default ``print``).

    Returns:
        tuple[dict, dict]: the manifest written to ``report.json`` and each section's result.

    Raises:
        WeightsError, ImageInputError: bad input (unknown model, missing weights file,
            missing or empty image folder), before anything is written.
        OutputBusyError: another run is writing into ``out``.
    """
    from ..io.devices import resolve_device
    from ..io.images import ImageInputError, list_images
    from ..io.output import check_output_dir, output_lock
    from ..io.weights import parse_model_spec

    log = log or print
    command = command or "hpx-analyze report"
    specs = section_specs(settings, model_weights)
    for spec in {spec for section_specs in specs.values() for spec in section_specs}:
        parse_model_spec(spec)  # unknown models, unknown weights modes, missing checkpoint files
    dev = resolve_device(device)
    if images is not None and not Path(images).is_dir():
        raise ImageInputError(f"image folder not found: {images}")
    images = Path(images) if images is not None else None
    list_images(images, 1)  # a folder without a usable image fails here, before anything is written
    out = check_output_dir(out)
    with output_lock(out, command=command):
        _remove_leftovers(out)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=out))
        try:
            manifest, results = _build(staging, settings, specs, dev, seed, images, command, log)
            _swap_in(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest, results


def _remove_leftovers(out: Path) -> None:
    """Staging folders of runs that were killed (the caller holds the folder's lock)."""
    for path in out.iterdir():
        if path.is_dir() and path.name.startswith((_STAGING, _OLD)):
            shutil.rmtree(path, ignore_errors=True)


def _swap_in(staging: Path, out: Path) -> None:
    """Move every file and folder of the complete report from ``staging`` into ``out``,
    replacing the previous ones; other files in ``out`` are left alone. The old entries are
    moved aside first and put back if a move fails."""
    old = Path(tempfile.mkdtemp(prefix=_OLD, dir=out))
    aside: list[str] = []  # previous entries moved into ``old``
    placed: list[str] = []  # new entries moved into ``out``
    try:
        for entry in sorted(staging.iterdir()):
            target = out / entry.name
            if target.exists() or target.is_symlink():
                os.replace(target, old / entry.name)
                aside.append(entry.name)
            os.replace(entry, target)
            placed.append(entry.name)
    except BaseException:
        for name in placed:
            os.replace(out / name, staging / name)
        for name in aside:
            os.replace(old / name, out / name)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _build(out: Path, settings, specs, dev, seed, images, command, log) -> tuple[dict, dict]:
    from ..io.devices import device_description
    from ..models.fast import fast_path_record
    from ..versions import versions

    results: dict = {}
    seconds: dict[str, float] = {}
    start_all = time.perf_counter()
    for section, entry in SECTION_TABLE.items():
        log(f"report: {section} (Fig. {entry.figure or section})")
        start = time.perf_counter()
        run = RunContext(device=dev, out_dir=out / section, seed=seed, command=command)
        results[section] = run_section(section, specs[section], settings, run, images)
        seconds[section] = round(time.perf_counter() - start, 2)
    manifest = {
        "settings": settings.as_dict(),
        "command": command,
        "sections": list(SECTION_TABLE),
        "models": {sec: specs[sec] for sec, entry in SECTION_TABLE.items() if entry.models},
        "random_init_models": random_init_models(results),
        "images": str(images) if images is not None else "bundled scikit-image photographs",
        "seed": seed,
        "device": str(dev),
        "device_description": device_description(dev),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "seconds": seconds,
        "total_seconds": round(time.perf_counter() - start_all, 2),
        "fast_paths": fast_path_record(),
    }
    write_manifest(out, manifest)
    write_report_md(out, manifest, results)
    return manifest, results
