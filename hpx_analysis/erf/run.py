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
from pathlib import Path

import torch
from torch import nn

from ..execution.distributed import DistContext, broadcast_object
from .compute import ErfResult, KeyedInput, accumulate_erf, erf_result, image_key
from .distributed import reduce_accumulator
from .state import ErfAccumulator, ErfStateError
from .unit import ErfUnit

__all__ = ["run_erf", "partial_stem", "partial_files", "discard_partial", "load_partial"]


def partial_stem(out_dir: str | Path, model_name: str) -> Path:
    return Path(out_dir) / f"erf_{model_name}.partial"


def _rank_stem(stem: Path, rank: int) -> Path:
    return stem.with_name(f"{stem.name}.rank{rank}")


def partial_files(stem: str | Path) -> list[Path]:
    """Stems of the per-rank partial states that exist for ``stem``, sorted."""
    stem = Path(stem)
    if not stem.parent.is_dir():
        return []
    found = sorted(stem.parent.glob(f"{stem.name}.rank*.npz"))
    stems = [p.with_suffix("") for p in found]
    return [s for s in stems if s.name[len(stem.name) + 5 :].isdigit() and ErfAccumulator.exists(s)]


def discard_partial(stem: str | Path) -> None:
    for s in partial_files(stem):
        ErfAccumulator.remove(s)


def load_partial(stem: str | Path, settings: dict) -> ErfAccumulator:
    """All partial states of ``stem`` merged; empty if there are none."""
    merged = ErfAccumulator(settings=dict(settings))
    for s in partial_files(stem):
        part = ErfAccumulator.load(s)
        if part.settings != settings:
            raise ErfStateError(
                f"the partial ERF state {s} was made with other settings ({part.settings}); start over without resuming"
            )
        merged = merged.merge(part)
    return merged


def run_erf(
    model: nn.Module,
    images: Iterable,
    *,
    settings: dict,
    state_stem: str | Path | None = None,
    resume: bool = False,
    ctx: DistContext | None = None,
    save_every: int = 1,
    size: int | None = None,
    batch_size: int = 1,
    method: str = "grad",
    precision: str = "fp32",
    device: str | torch.device | None = None,
    ig_steps: int = 32,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    compile_blocks: bool = False,
    unit: ErfUnit | None = None,
    transform: Callable | None = None,
    per_image: Callable | None = None,
) -> ErfResult:
    """Compute the ERF of ``model`` over ``images`` with saving, resuming and sharding.

    ``settings`` describes the run (model, weights, size, method, ...) and guards resuming.
    ``on_start(done, todo)`` is called on every rank once it knows how many images were
    already done and how many this rank will compute. Every rank returns the full result.
    ``compile_blocks``, ``unit``, ``transform``, ``per_image``: see :func:`hpx_analysis.erf.compute_erf`.
    """
    ctx = ctx or DistContext()
    items = list(images)
    stem = Path(state_stem) if state_stem is not None else None

    prior = ErfAccumulator(settings=dict(settings))
    error = None
    if ctx.is_main and stem is not None:
        try:
            if resume:
                prior = load_partial(stem, settings)
            discard_partial(stem)
            if prior.done_keys():
                prior.save(_rank_stem(stem, 0))
        except ErfStateError as exc:
            error = str(exc)
    error = broadcast_object(error, ctx)
    if error is not None:
        raise ErfStateError(error)
    done = broadcast_object(sorted(prior.done_keys()), ctx)

    done_set = set(done)
    # tensors are keyed by their position in the full list: hand the keys over explicitly
    keyed = [KeyedInput(it, image_key(it, i)) for i, it in enumerate(items)]
    foreign = sorted(done_set - {k.key for k in keyed})
    if foreign:
        raise ErfStateError(
            f"the saved ERF state in {stem.parent} holds {len(foreign)} image(s) that are not among the "
            f"{len(keyed)} image(s) asked for now (e.g. {foreign[0]!r}); ask for the same images as the "
            "interrupted run, or start over without resuming"
        )
    mine = ctx.take([k for k in keyed if k.key not in done_set])
    state = prior if ctx.is_main else ErfAccumulator(settings=dict(settings))
    if on_start is not None:
        on_start(len(done_set), len(mine))

    batches_seen = [0]

    def save(st: ErfAccumulator) -> None:
        batches_seen[0] += 1
        if stem is not None and batches_seen[0] % save_every == 0:
            st.save(_rank_stem(stem, ctx.rank))

    info = accumulate_erf(
        model,
        mine,
        state,
        size=size,
        batch_size=batch_size,
        method=method,
        precision=precision,
        device=device,
        ig_steps=ig_steps,
        progress=progress,
        on_batch=save,
        compile_blocks=compile_blocks,
        unit=unit,
        transform=transform,
        per_image=per_image,
    )
    if stem is not None:
        state.save(_rank_stem(stem, ctx.rank))
    merged = reduce_accumulator(state, ctx)
    deviation = broadcast_object(info["precision_deviation"], ctx)
    return erf_result(
        merged,
        method=method,
        precision=precision,
        device=info["device"],
        precision_deviation=deviation,
        compiled_blocks=info["compiled_blocks"],
        images_per_pass=info["images_per_pass"],
        unit=unit,
    )
