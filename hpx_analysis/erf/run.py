"""An ERF run that can be interrupted, resumed and spread over processes.

While it runs, every rank saves its partial accumulation every ``save_every`` batches as
``<stem>.rank<r>.npz`` (one file: sum, image keys and settings; ``stem`` is e.g. ``<out>/erf_<model>.partial``). On
``resume=True`` rank 0 merges all partial files found (from any earlier number of ranks:
they hold disjoint images, keyed by path), checks that they were made with the same
settings, saves the merged state as its own file and removes the others; every rank then
skips the images already done and the remaining images are sharded across ranks. A
resumed state must hold only images of the list asked for now (compared by key): a state
with other images is refused rather than silently counted.
Without ``resume`` any partial files are removed first. After the final reduction the
partial files stay until the caller has written its outputs and calls
:func:`discard_partial`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from torch import nn

from ..execution.distributed import broadcast_object
from ..settings import Hooks, RunContext
from .compute import KeyedInput, PassInfo, accumulate_erf, image_key
from .distributed import reduce_accumulator
from .settings import ErfSettings
from .state import ErfAccumulator, ErfStateError

__all__ = ["run_erf", "partial_stem", "partial_files", "discard_partial", "load_partial"]


def partial_stem(out_dir: str | Path, label: str) -> Path:
    """The stem of a run's partial states.

    Args:
        out_dir: the output folder.
        label: the run label.

    Returns:
        Path: ``<out_dir>/erf_<label>.partial``.
    """
    return Path(out_dir) / f"erf_{label}.partial"


def _rank_stem(stem: Path, rank: int) -> Path:
    return stem.with_name(f"{stem.name}.rank{rank}")


def partial_files(stem: str | Path) -> list[Path]:
    """Stems of the per-rank partial states that exist for ``stem``, sorted.

    Args:
        stem: the stem (:func:`partial_stem`).

    Returns:
        list[Path]: the stems of the rank files.
    """
    stem = Path(stem)
    if not stem.parent.is_dir():
        return []
    found = sorted(stem.parent.glob(f"{stem.name}.rank*.npz"))
    stems = [p.with_suffix("") for p in found]
    return [s for s in stems if s.name[len(stem.name) + 5 :].isdigit() and ErfAccumulator.exists(s)]


def discard_partial(stem: str | Path) -> None:
    """Remove every partial state of ``stem`` (and any temporary file a killed save left).

    Args:
        stem: the stem (:func:`partial_stem`).
    """
    for s in partial_files(stem):
        ErfAccumulator.remove(s)


def load_partial(stem: str | Path, settings: dict) -> ErfAccumulator:
    """All partial states of ``stem`` merged; empty if there are none.

    Args:
        stem: the stem (:func:`partial_stem`).
        settings: the resume guard every state must hold.

    Returns:
        ErfAccumulator: the merged state.

    Raises:
        ErfStateError: a state was made with other settings, or is damaged.
    """
    merged = ErfAccumulator(settings=dict(settings))
    for s in partial_files(stem):
        part = ErfAccumulator.load(s)
        if part.settings != settings:
            raise ErfStateError(
                f"the partial ERF state {s} was made with other settings ({part.settings}); start over without resuming"
            )
        merged = merged.merge(part)
    return merged


def _prior_state(stem: Path | None, guard: dict, run: RunContext) -> ErfAccumulator:
    """Rank 0's starting state: the merged partial states of ``stem`` when resuming (saved as
    rank 0's own file, the others removed), else an empty one; the same error on every rank."""
    prior = ErfAccumulator(settings=dict(guard))
    error = None
    if run.is_main and stem is not None:
        try:
            if run.resume:
                prior = load_partial(stem, guard)
            discard_partial(stem)
            if prior.done_keys():
                prior.save(_rank_stem(stem, 0))
        except ErfStateError as exc:
            error = str(exc)
    error = broadcast_object(error, run.dist)
    if error is not None:
        raise ErfStateError(error)
    return prior


def run_erf(
    model: nn.Module,
    images: Iterable,
    settings: ErfSettings,
    guard: dict,
    state_stem: str | Path | None = None,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    per_image: Callable | None = None,
    save_every: int = 1,
) -> tuple[ErfAccumulator, PassInfo]:
    """Compute the ERF of ``model`` over ``images`` with saving, resuming and sharding.

    Args:
        model: the model.
        images: the inputs (see :func:`hpx_analysis.erf.compute_erf`).
        settings: what is computed.
        guard: what the saved state must share to be resumed
            (:meth:`~hpx_analysis.erf.settings.ErfSettings.resume_guard`).
        state_stem: where the partial states are kept (``<stem>.rank<r>.npz``); None: not saved.
        run: the device, the process group and ``resume``.
        hooks: ``on_start(done, todo)`` on every rank once it knows how many images were
            already done and how many it will compute; ``progress(n)`` and ``on_batch(state)``
            after every batch.
        per_image: called with every batch's keys and per-image maps (this rank's images).
        save_every: save the partial state every this many batches.

    Returns:
        tuple[ErfAccumulator, PassInfo]: every rank's accumulation combined (on every rank)
        and how the passes ran; :func:`~hpx_analysis.erf.compute.erf_result` makes the result.
    """
    run, hooks = run or RunContext(), hooks or Hooks()
    items = list(images)
    stem = Path(state_stem) if state_stem is not None else None
    prior = _prior_state(stem, guard, run)
    done_set = set(broadcast_object(sorted(prior.done_keys()), run.dist))
    # tensors are keyed by their position in the full list: hand the keys over explicitly
    keyed = [KeyedInput(it, image_key(it, i)) for i, it in enumerate(items)]
    foreign = sorted(done_set - {k.key for k in keyed})
    if foreign:
        raise ErfStateError(
            f"the saved ERF state in {stem.parent} holds {len(foreign)} image(s) that are not among the "
            f"{len(keyed)} image(s) asked for now (e.g. {foreign[0]!r}); ask for the same images as the "
            "interrupted run, or start over without resuming"
        )
    mine = run.dist.take([k for k in keyed if k.key not in done_set])
    state = prior if run.is_main else ErfAccumulator(settings=dict(guard))
    hooks.on_start(len(done_set), len(mine))
    batches_seen = [0]

    def save(st: ErfAccumulator) -> None:
        batches_seen[0] += 1
        if stem is not None and batches_seen[0] % save_every == 0:
            st.save(_rank_stem(stem, run.dist.rank))
        hooks.on_batch(st)

    info = accumulate_erf(model, mine, state, settings, run.device, replace(hooks, on_batch=save), per_image)
    if stem is not None:
        state.save(_rank_stem(stem, run.dist.rank))
    merged = reduce_accumulator(state, run.dist)
    deviation = broadcast_object(info.precision_deviation, run.dist)
    return merged, replace(info, precision_deviation=deviation)
