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

from .manifest import write_manifest
from .markdown import write_report_md
from .settings import FIGURES, SECTION_MODELS, SECTIONS, ReportSettings, weights_chooser

__all__ = ["build_report", "random_init_models", "run_section"]

_STAGING, _OLD = ".report-new-", ".report-old-"


def random_init_models(results: dict) -> list[str]:
    """Canonical names of the models whose weights are a random init, over every section."""
    weights: dict[str, str] = {}
    for section, result in results.items():
        if section == "kernels":
            weights.update({r.model: r.weights for r in result})
        elif section in ("erf", "coverage", "truncation"):
            frame = result.to_frame()
            pairs = frame[["model", "weights"]].drop_duplicates().itertuples(index=False)
            weights.update({str(m): str(w) for m, w in pairs})
    return sorted(m for m, w in weights.items() if w.startswith("random init"))


def _loaded(specs: list[str], device: torch.device, seed: int):
    from ..io.weights import load_model

    for spec in specs:
        torch.manual_seed(seed)
        yield load_model(spec, device=device, seed=seed)


def run_section(
    section: str,
    specs: list[str],
    settings: ReportSettings,
    *,
    out_dir: Path,
    device: torch.device,
    seed: int = 0,
    images: Path | None = None,
    command: str = "",
):
    """Compute one section's result (saved into ``out_dir`` with its figures) and return it."""
    from ..plotting import files

    s = settings
    if section == "kernels":
        from ..kernels import kernel_maps

        results = [kernel_maps(m.model, name=m.name, weights=m.weights) for m in _loaded(specs, device, seed)]
        for r in results:
            r.save(out_dir)
            files.save_kernel_figure(r, out_dir)
        return results
    if section == "coverage":
        from ..coverage import CoverageResult, model_coverage

        result = CoverageResult.concat(
            [model_coverage(m.model, name=m.name, weights=m.weights) for m in _loaded(specs, device, seed)]
        )
        result.save(out_dir)
        files.save_coverage_figure(result, out_dir)
        return result
    if section == "erf":
        from ..erf import ErfComparison
        from ..erf.analysis import erf_for_model, finish_state
        from ..io.images import list_images

        items = list_images(images, s.erf_num_images)
        comparison = ErfComparison()
        for m in _loaded(specs, device, seed):
            result = erf_for_model(
                m, items, size=s.erf_size, seed=seed, images=images, device=device, state_dir=out_dir, command=command
            )
            result.save(out_dir)
            finish_state(out_dir, result)
            comparison.results.append(result)
        comparison.save_table(out_dir)
        files.save_erf_figure(comparison, out_dir)
        return comparison
    if section == "truncation":
        from ..erf.analysis import images_label
        from ..io.images import labels_available, list_images
        from ..truncation import TruncationComparison, truncation_for_model, truncation_settings

        items = list_images(images, s.truncation_num_images)
        labelled, why = labels_available(items)
        results = [
            truncation_for_model(
                m,
                items,
                labelled=labelled,
                device=device,
                batch_size=s.truncation_batch_size,
                rel_sizes=s.truncation_rel_sizes,
            )
            for m in _loaded(specs, device, seed)
        ]
        comparison = TruncationComparison(
            results,
            truncation_settings(
                rel_sizes=s.truncation_rel_sizes,
                shape="square",
                stages=None,
                batch_size=s.truncation_batch_size,
                crop_pct=None,
                size=None,
                seed=seed,
                world_size=1,
                images=images_label(images),
                num_images=len(items),
                labels=labelled,
                no_labels_reason=why,
            ),
        )
        comparison.save(out_dir)
        files.save_truncation_figure(comparison, out_dir)
        return comparison
    if section == "runtime":
        from ..runtime import MODE_CHOICES, runtime_sweep

        result = runtime_sweep(
            resolutions=s.runtime_resolutions,
            mode=MODE_CHOICES[s.runtime_mode],
            device=device,
            repeats=s.runtime_repeats,
            warmup=s.runtime_warmup,
            seed=seed,
        )
        result.save(out_dir)
        files.save_runtime_figure(result, out_dir)
        return result
    if section == "probe":
        from .probe_section import run_probe_section

        return run_probe_section(specs, out_dir, device, seed)
    raise ValueError(f"unknown report section {section!r}; the sections are {', '.join(SECTIONS)}")


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

    Returns ``(manifest, results)``: the manifest written to ``report.json`` and each
    section's result object. Bad input (unknown model, missing weights file, missing or
    empty image folder, unavailable device) raises before anything is written; a folder
    another run is writing into raises :class:`~hpx_analysis.io.output.OutputBusyError`."""
    from ..io.devices import resolve_device
    from ..io.images import ImageInputError, list_images
    from ..io.output import check_output_dir, output_lock
    from ..io.weights import parse_model_spec

    log = log or print
    command = command or "hpx-analyze report"
    choose = weights_chooser(settings.weights, model_weights)
    specs = {section: [choose(alias) for alias in SECTION_MODELS[section]] for section in SECTIONS}
    # the probe section runs on the bundled trained weights unless a model's weights are given
    choose_probe = weights_chooser("auto", [w for w in model_weights or () if "=" in w])
    specs["probe"] = [choose_probe(alias) for alias in SECTION_MODELS["probe"]]
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
    from ..versions import versions

    results: dict = {}
    seconds: dict[str, float] = {}
    start_all = time.perf_counter()
    for section in SECTIONS:
        log(f"report: {section} (Fig. {FIGURES[section] or 'probe'})")
        start = time.perf_counter()
        results[section] = run_section(
            section,
            specs[section],
            settings,
            out_dir=out / section,
            device=dev,
            seed=seed,
            images=images,
            command=command,
        )
        seconds[section] = round(time.perf_counter() - start, 2)
    manifest = {
        "settings": settings.as_dict(),
        "command": command,
        "sections": list(SECTIONS),
        "models": {sec: specs[sec] for sec in SECTIONS if SECTION_MODELS[sec]},
        "random_init_models": random_init_models(results),
        "images": str(images) if images is not None else "bundled scikit-image photographs",
        "seed": seed,
        "device": str(dev),
        "device_description": device_description(dev),
        "threads": torch.get_num_threads(),
        "versions": versions(),
        "seconds": seconds,
        "total_seconds": round(time.perf_counter() - start_all, 2),
    }
    write_manifest(out, manifest)
    write_report_md(out, manifest, results)
    return manifest, results
