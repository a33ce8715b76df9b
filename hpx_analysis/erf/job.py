"""The ERF job: every map of every model computed, saved and drawn, resumably.

:func:`erf_job` is what ``hpx-analyze erf`` and the report call: for each model (loaded, or
a spec to load) and each map's settings (:func:`~hpx_analysis.erf.settings.map_grid`: sizes
x units) it computes the map (:func:`erf_map`; interruptible, resumable with
``run.resume``, sharded under ``torchrun``), writes ``erf_<label>.npy`` / ``.json`` and
removes the partial state; then ``erf_metrics.csv`` and the figures (``erf.png`` /
``erf.pdf``, and where they apply ``erf_sizes.png``, ``erf_series.png``,
``erf_overlay.png``). Only rank 0 writes; every rank returns the full results.

Run labels (the names in the file names): the model's run label (its name, or the one given),
then the unit's suffix (``_s<k>``, ``_<layer>``) and ``_<size>px`` when the maps have several
sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..execution.out_of_memory import is_out_of_memory
from ..io.weights import LoadedModel, ModelSpec, load_model, parse_model_spec
from ..probe.analysis import images_for_model
from ..settings import Hooks, RunContext
from .compute import ErfError, ErfModelError, GradCheckpointingError, erf_result
from .extras import MapExtras
from .labels import RunSpec, assign_labels
from .metrics import degenerate_warning
from .preflight import check_maps, check_units
from .result import ErfComparison, ErfResult
from .run import discard_partial, partial_files, partial_stem, run_erf
from .settings import ErfFigureSettings, ErfSettings, default_batch_size
from .state import ErfAccumulator, ErfStateError

__all__ = ["erf_job", "erf_map", "ErfModel", "erf_models", "ErfInterrupted", "finish_state", "map_label"]


class ErfInterrupted(KeyboardInterrupt):
    """Ctrl-C during a map: ``label`` is the map's run label, ``saved`` how many of its images
    are in the partial state in ``out_dir`` (resume with ``RunContext(resume=True)``)."""

    def __init__(self, label: str, saved: int, out_dir: Path | None):
        super().__init__(label)
        self.label, self.saved, self.out_dir = label, saved, out_dir


@dataclass(frozen=True)
class ErfModel:
    """One model of a job.

    Args:
        source: the loaded model, or what to load (``"NAME[=WEIGHTS]"`` or a ModelSpec).
        label: its run label (empty: the model's name).
        series: the folder or glob it came from, for a checkpoint series.
        checkpoint: the checkpoint's file stem in that series.
    """

    source: str | ModelSpec | LoadedModel
    label: str = ""
    series: str | None = None
    checkpoint: str | None = None

    def load(self, run: RunContext) -> LoadedModel:
        """The loaded model (loaded on ``run.device`` with ``run.seed`` unless given loaded).

        Args:
            run: the device and seed.

        Returns:
            LoadedModel: the model with its weights record.
        """
        if isinstance(self.source, LoadedModel):
            return self.source
        torch.manual_seed(run.seed)
        return load_model(self.source, device=run.device, seed=run.seed)


def erf_models(models: Sequence) -> list[ErfModel]:
    """The models of a job with their run labels.

    Args:
        models: loaded models (:class:`~hpx_analysis.io.weights.LoadedModel`), specs
            (``"NAME[=WEIGHTS]"``, ModelSpec), labelled runs
            (:class:`~hpx_analysis.erf.labels.RunSpec`) or :class:`ErfModel` entries.

    Returns:
        list[ErfModel]: one entry per model; specs given without a label get the model name,
        with a weights tag where a name repeats (:func:`~hpx_analysis.erf.labels.assign_labels`).
    """
    out: list[ErfModel] = []
    for m in models:
        if isinstance(m, ErfModel):
            out.append(m)
        elif isinstance(m, RunSpec):
            out.append(ErfModel(m.text, m.label, m.series, m.checkpoint))
        elif isinstance(m, LoadedModel):
            out.append(ErfModel(m, m.name))
        elif isinstance(m, (str, ModelSpec)):
            out.append(ErfModel(str(m)))
        else:
            raise TypeError(f"an ERF model is a LoadedModel, 'NAME[=WEIGHTS]' or a ModelSpec, got {type(m).__name__}")
    unlabelled = [i for i, m in enumerate(out) if not m.label]
    runs = assign_labels(
        [RunSpec(str(out[i].source)) for i in unlabelled],
        [parse_model_spec(str(out[i].source)).name for i in unlabelled],
    )
    for i, spec in zip(unlabelled, runs):
        out[i] = ErfModel(out[i].source, spec.label, out[i].series, out[i].checkpoint)
    return out


def map_label(model_label: str, settings: ErfSettings, several_sizes: bool) -> str:
    """A map's run label: the model's, the unit's suffix and ``_<size>px`` with several sizes.

    Args:
        model_label: the model's run label.
        settings: the map's settings.
        several_sizes: whether the job's maps have several sizes.

    Returns:
        str: the label in the map's file names.
    """
    return model_label + settings.unit.suffix + (f"_{settings.size}px" if several_sizes else "")


def _weights_key(loaded: LoadedModel, seed: int) -> str:
    """A stable description of the weights for the resume guard (the full text, which may carry
    a changing download error, is in the record's ``weights``)."""
    return loaded.weights if loaded.weights_kind != "random" else f"random init (seed {seed})"


def _run_record(settings: ErfSettings, run: RunContext, entry: ErfModel, run_label: str | None) -> dict:
    """The run fields of a map's record (written into ``erf_<label>.json`` as they are)."""
    record = {
        "size": settings.size,
        "batch_size": settings.batch_size,
        "seed": run.seed,
        "images_source": settings.images,
        "grad_checkpointing": settings.grad_checkpointing,
        "compile": settings.compile_blocks,
        "world_size": run.dist.world_size,
        "command": run.command,
    }
    if entry.checkpoint is not None:
        record["series"], record["checkpoint"] = entry.series, entry.checkpoint
    if run_label is not None:
        record["run_label"] = run_label
    return record


def erf_map(
    loaded: LoadedModel,
    items: Sequence,
    settings: ErfSettings,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    label: str | None = None,
    entry: ErfModel | None = None,
    run_label: str | None = None,
) -> ErfResult:
    """One map of one model, computed resumably (saves nothing but its partial state).

    Args:
        loaded: the model with its weights record.
        items: the inputs: image paths or items, or normalized ``(3, H, W)`` tensors.
        settings: the map's settings (a None ``batch_size`` becomes the device's default).
        run: device, process group, seed, command line; ``out_dir`` keeps the partial state
            (None: no state), ``resume`` continues it.
        hooks: ``task(title)``, ``on_start(done, todo)`` and ``progress(n)`` for a progress
            bar; ``log(line)`` for notes.
        label: the map's run label (default: the model's name).
        entry: the job's model entry (its checkpoint series goes into the record).
        run_label: the model's run label, recorded where it is not the map's label alone.

    Returns:
        ErfResult: the complete result (every rank).

    Raises:
        ErfInterrupted: Ctrl-C; the images done are in the partial state.
        ErfModelError: the model failed on the inputs.
    """
    run, hooks = run or RunContext(), hooks or Hooks()
    label = label or loaded.name
    if settings.batch_size is None:
        settings = settings.replace(batch_size=default_batch_size(run.device))
    if settings.grad_checkpointing and not hasattr(loaded.model, "set_grad_checkpointing"):
        raise GradCheckpointingError(f"{loaded.name} does not support gradient checkpointing (--grad-checkpointing)")
    stem = partial_stem(run.out_dir, label) if run.out_dir is not None else None
    shard = f" (rank 0's share of {run.dist.world_size})" if run.dist.distributed else ""
    hooks.task(f"ERF {label}{shard}")
    try:
        extras = MapExtras.measure(loaded.model, items, settings, seed=run.seed)
        guard = settings.resume_guard(loaded.name, _weights_key(loaded, run.seed))
        state, info = run_erf(loaded.model, items, settings, guard, stem, run, hooks, extras.per_image)
        # folders and links the image listing could not read (hpx_analysis.io.images.ImageList)
        listing = [{"key": path, "reason": reason} for path, reason in getattr(items, "skipped", ())]
        identity = {
            "skipped": [*state.skipped, *listing],
            "model": loaded.name,
            "weights": loaded.weights,
            "weights_kind": loaded.weights_kind,
            "name": label if label != loaded.name else "",
            "run": _run_record(settings, run, entry or ErfModel(loaded), run_label),
            **extras.fields(),
        }
        return erf_result(state, info, settings, identity)
    except KeyboardInterrupt:
        raise ErfInterrupted(label, _saved_images(stem), run.out_dir) from None
    except ErfStateError:
        raise  # the saved state the user asked to resume stays as it was
    except Exception as err:
        if not is_out_of_memory(err):  # out of memory: a larger device can continue it (--resume)
            _discard_after_failure(stem, run)
        if isinstance(err, ErfError) or not isinstance(err, (RuntimeError, AssertionError)):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ErfModelError(f"{loaded.name} failed on {settings.size or 'its own'} px inputs: {first}") from err


def _discard_after_failure(stem: Path | None, run: RunContext) -> None:
    """Remove a failed map's partial state: a run either completes or is clearly partial
    (interrupted or out of memory, resumable), never left half-written by an error."""
    if stem is not None and run.is_main:
        discard_partial(stem)


def _saved_images(stem: Path | None) -> int:
    """How many images the partial states of ``stem`` hold (0 when unreadable)."""
    if stem is None:
        return 0
    try:
        return sum(ErfAccumulator.load(s).count for s in partial_files(stem))
    except (ValueError, OSError):
        return 0


def _report_map(result: ErfResult, hooks: Hooks) -> None:
    """Notes on one map for the user: a degenerate map, a batch split to fit, skipped images."""
    warning = degenerate_warning(result.metrics(), f"the ERF of {result.label}")
    if warning:
        hooks.log(f"warning: {warning}")
    batch = result.run.get("batch_size")
    if result.images_per_pass is not None and batch is not None and result.images_per_pass < batch:
        hooks.log(
            f"{result.model_name}: a batch of {batch} did not fit in device memory; "
            f"ran {result.images_per_pass} image(s) per pass"
        )
    if result.skipped:
        hooks.log(f"{result.model_name}: {len(result.skipped)} image(s) skipped (listed in erf_{result.label}.json)")


def finish_state(state_dir: str | Path | None, result: ErfResult) -> None:
    """Remove the partial accumulation of ``result``'s run (after its files are written).

    Args:
        state_dir: the folder of the partial state (None: nothing to remove).
        result: the finished map (its label names the state).
    """
    if state_dir is not None:
        discard_partial(partial_stem(state_dir, result.label))


def _checked_models(entries: list[ErfModel], maps: list[ErfSettings], items, run: RunContext) -> dict:
    """Check every map against the first model of each name before any work (stage range,
    layer names, a layer that depends on the input); returns those models loaded, by index."""
    if all(s.unit.stage is None and s.unit.layer is None for s in maps):
        return {}
    loaded: dict[int, LoadedModel] = {}
    names: set[str] = set()
    for i, entry in enumerate(entries):
        name = entry.source.name if isinstance(entry.source, LoadedModel) else parse_model_spec(str(entry.source)).name
        if name in names:
            continue
        names.add(name)
        loaded[i] = entry.load(run)
        check_units(loaded[i].model, maps, loaded[i].name, items)
    return loaded


def erf_job(
    models: Sequence,
    items: Sequence,
    settings: ErfSettings | Sequence[ErfSettings],
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    figures: ErfFigureSettings | None = None,
) -> ErfComparison:
    """Every map of every model: computed, saved with its record, and drawn.

    Args:
        models: the models (see :func:`erf_models`): loaded models, ``"NAME[=WEIGHTS]"``
            specs, labelled runs or :class:`ErfModel` entries; specs are loaded on
            ``run.device`` with ``run.seed``.
        items: the inputs: image paths or items (e.g. :func:`~hpx_analysis.io.images.list_images`),
            normalized ``(3, H, W)`` tensors, or a per-model source
            (:class:`~hpx_analysis.probe.analysis.ProbeImages`: each model's own probe images,
            at its size); ``settings.images`` names them in the records.
        settings: one map's settings, or one per map (:func:`~hpx_analysis.erf.settings.map_grid`).
        run: device, process group, seed, command line, ``resume``; ``out_dir`` is where the
            files go (None: nothing is written, no partial state is kept).
        hooks: progress (``task``, ``on_start``, ``progress``) and notes (``log``).
        figures: the figures' scale, colour map and overlay image (default: RepLKNet's look).

    Returns:
        ErfComparison: the results, models outermost, then the maps in the order given.
    """
    run, hooks = run or RunContext(), hooks or Hooks()
    maps = [settings] if isinstance(settings, ErfSettings) else list(settings)
    check_maps(maps)
    several_sizes = len({s.size for s in maps}) > 1
    comparison = ErfComparison()
    writes = run.is_main and run.out_dir is not None
    entries = erf_models(models)
    checked = _checked_models(entries, maps, items, run)
    for i, entry in enumerate(entries):
        loaded = checked.pop(i, None) or entry.load(run)
        for map_settings in maps:
            model_items, size = images_for_model(items, loaded.model, map_settings.size)
            map_settings = map_settings.replace(size=size)
            label = map_label(entry.label, map_settings, several_sizes)
            run_label = entry.label if len(maps) > 1 or entry.label != loaded.name else None
            result = erf_map(loaded, model_items, map_settings, run, hooks, label, entry, run_label)
            comparison.results.append(result)
            if run.is_main:
                _report_map(result, hooks)
            if writes:
                result.save(run.out_dir)
                finish_state(run.out_dir, result)
    if writes:
        from ..plotting.files import save_erf_figures

        comparison.save_table(run.out_dir)
        save_erf_figures(comparison, run.out_dir, maps, figures or ErfFigureSettings())
    return comparison
