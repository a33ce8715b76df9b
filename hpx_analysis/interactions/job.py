"""The interaction job: every model's result, then the files.

Writes into ``run.out_dir``: ``interactions.csv`` (one row per model and block),
``interactions_<label>.npz`` per model (:meth:`InteractionResult.save`),
``interactions_distance.png``, ``interactions_maps.png`` (the first image's maps),
``interactions_rollout.png`` with ``rollout``, and ``interactions.json`` (settings, run,
fast paths, and per model the weights, blocks, skipped blocks and notes).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from ..io.output import atomic_write
from ..jobs import loaded_models, record_header
from ..probe.analysis import images_for_model
from ..settings import Hooks, RunContext, json_ready
from .maps import interaction_maps
from .result import InteractionResult, interactions_frame
from .settings import InteractionSettings

__all__ = ["run_interactions", "run_labels", "write_interactions", "RECORD_FILE", "TABLE_FILE"]

RECORD_FILE, TABLE_FILE = "interactions.json", "interactions.csv"
DISTANCE_FIGURE, MAPS_FIGURE, ROLLOUT_FIGURE = (
    "interactions_distance.png",
    "interactions_maps.png",
    "interactions_rollout.png",
)


def _identity(model) -> tuple[str, str]:
    """``(name, short weights tag)`` of a loaded model or a spec, before any loading."""
    from ..io.weights import LoadedModel, parse_model_spec
    from ..plotting.labels import weights_tag

    if isinstance(model, LoadedModel):
        return model.name, weights_tag(model.weights)
    spec = parse_model_spec(model if isinstance(model, str) else f"{model.name}={model.weights}")
    return spec.name, weights_tag(spec.weights)


def run_labels(models) -> list[str]:
    """File-name labels: the model's name, with a short weights tag when a name repeats.

    Args:
        models: loaded models (:class:`~hpx_analysis.io.weights.LoadedModel`) or specs
            (``"NAME[=WEIGHTS]"``, :class:`~hpx_analysis.io.weights.ModelSpec`).

    Returns:
        list[str]: one unique label per model.
    """
    identities = [_identity(m) for m in models]
    counts = Counter(name for name, _ in identities)
    labels, taken = [], set()
    for name, tag in identities:
        label = name
        if counts[name] > 1:
            label += "-" + re.sub(r"[^A-Za-z0-9_.]+", "-", tag).strip("-")
        base, k = label, 2
        while label in taken:
            label, k = f"{base}-{k}", k + 1
        taken.add(label)
        labels.append(label)
    return labels


def _save_figure(fig, path: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def write_interactions(results: list[InteractionResult], settings, run: RunContext) -> list[Path]:
    """Write the table, arrays, figures and record of ``results`` into ``run.out_dir``.

    Args:
        results: one result per model.
        settings: the :class:`InteractionSettings` used.
        run: the run context (its output folder, seed, command).

    Returns:
        list[Path]: the files written.
    """
    from ..plotting.interactions import plot_interaction_distance, plot_interaction_maps, plot_interactions

    out = Path(run.out_dir)
    table = interactions_frame(results)
    paths = [atomic_write(out / TABLE_FILE, lambda fh: fh.write(table.to_csv(index=False).encode()))]
    paths += [r.save(out) for r in results]
    paths.append(_save_figure(plot_interaction_distance(results), out / DISTANCE_FIGURE, dpi=150))
    paths.append(_save_figure(plot_interaction_maps(results), out / MAPS_FIGURE, dpi=120))
    if settings.rollout:
        paths.append(_save_figure(plot_interactions(results), out / ROLLOUT_FIGURE, dpi=120))
    record = {**record_header(settings), "run": run.describe(), "models": [r.record() for r in results]}
    text = json.dumps(json_ready(record), indent=2)
    paths.append(atomic_write(out / RECORD_FILE, lambda fh: fh.write(text.encode())))
    return paths


def run_interactions(
    models, images, settings: InteractionSettings | None = None, run: RunContext | None = None, hooks=None
) -> list[InteractionResult]:
    """The interaction analysis of each model on the same images, and its files.

    Args:
        models: loaded models or specs (:func:`~hpx_analysis.jobs.loaded_models`: specs are
            loaded one at a time on ``run.device`` with ``run.seed``).
        images: tensors or image files (see :func:`~.maps.image_tensors`), or a per-model source
            (:class:`~hpx_analysis.probe.analysis.ProbeImages`: each model's probe images at its size).
        settings: the settings (default: the defaults).
        run: the run context; with ``out_dir`` None nothing is written.
        hooks: ``task`` per model, ``on_start(0, images)``, ``progress`` per image, ``log``
            for skipped blocks and notes.

    Returns:
        list[InteractionResult]: one per model, in order.
    """
    settings = settings or InteractionSettings()
    run, hooks = run or RunContext(), hooks or Hooks()
    results = []
    models = list(models)
    for loaded, label in zip(loaded_models(models, run), run_labels(models)):
        hooks.task(label)
        hooks.on_start(0, len(images))
        items, size = images_for_model(images, loaded.model, settings.size)
        result = interaction_maps(
            loaded.model,
            items,
            settings.replace(size=size),
            run=run,
            hooks=hooks,
            name=loaded.name,
            weights=loaded.weights,
            label=label,
        )
        for skip in result.skipped:
            hooks.log(f"{label}: block {skip['stage']}.{skip['block']} skipped: {skip['reason']}")
        for note in result.notes:
            hooks.log(f"{label}: {note}")
        results.append(result)
    if run.out_dir is not None and run.is_main:
        sizes = {r.size[0] for r in results}  # probe images come at each model's size
        if len(sizes) == 1:
            settings = settings.replace(size=sizes.pop())
        write_interactions(results, settings, run)
    return results
