"""The report built in memory: every section's analysis run through the library, each result
saved into its section folder, then ``report.md`` and ``report.json`` written from the results."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .manifest import write_manifest
from .markdown import write_report_md
from .settings import FIGURES, SECTION_MODELS, SECTIONS, ReportSettings, weights_chooser

__all__ = ["build_report", "random_init_models", "run_section"]


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
    """Regenerate the report into ``out`` (its section folders are replaced).

    Returns ``(manifest, results)``: the manifest written to ``report.json`` and each
    section's result object. Bad input (unknown model, missing image folder, unavailable
    device) raises before anything is written."""
    from ..io.devices import device_description, resolve_device
    from ..io.images import ImageInputError
    from ..versions import versions

    log = log or print
    command = command or "hpx-analyze report"
    choose = weights_chooser(settings.weights, model_weights)
    dev = resolve_device(device)
    if images is not None and not Path(images).is_dir():
        raise ImageInputError(f"image folder not found: {images}")
    images = Path(images) if images is not None else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for section in SECTIONS:
        if (out / section).exists():
            shutil.rmtree(out / section)
    specs = {section: [choose(alias) for alias in SECTION_MODELS[section]] for section in SECTIONS}
    # the probe section runs on the bundled trained weights unless a model's weights are given
    choose_probe = weights_chooser("auto", [w for w in model_weights or () if "=" in w])
    specs["probe"] = [choose_probe(alias) for alias in SECTION_MODELS["probe"]]
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
