"""What each layer reads: per-query interaction maps and the mean interaction distance.

For one block let ``X`` be the tokens entering its token mixer and ``Y = mixer(X)``.
``Y(i) = sum_j c(i, j) + e(i)``, with ``c(i, j)`` the vector the mixer's token mixing
carries from token ``j`` to token ``i`` and ``e(i)`` the rest (biases); the published
mixers are linear in their mixed signal once their input-dependent gates are fixed
(:mod:`.definitions`). The interaction map is ``r(i, j) = ||c(i, j)||_2``; the mean
interaction distance of a block is ``sum r(i, j) ||p(i) - p(j)|| / sum r(i, j)`` over the
query tokens ``i`` (all, or a seeded uniform sample) and all tokens ``j``, with ``p`` the
token centres in input pixels, computed per image. Prefix tokens (a ViT's class token) are
left out of the maps and distances.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..settings import Hooks, RunContext
from .blocks import MixerBlock, capture_inputs, find_blocks
from .definitions import decompose
from .geometry import TokenGrid, query_token, token_grid
from .result import BlockInteractions, InteractionResult
from .rollout import Rollout
from .settings import InteractionSettings

__all__ = ["interaction_maps", "block_maps", "query_sample", "chunk_size", "image_tensors"]

_TEMPORARIES = 5  # (Q, N, C) tensors alive at once in a chunk's computation


def chunk_size(tokens: int, width: int, budget_mb: int) -> int:
    """Queries per chunk so that one chunk's ``(Q, N, C)`` tensors fit ``budget_mb`` MiB.

    Args:
        tokens: keys per query ``N``; width: channels ``C``; budget_mb: the budget.

    Returns:
        int: at least 1.
    """
    per_query = tokens * width * 4 * _TEMPORARIES
    return max(1, int(budget_mb * 2**20 // per_query))


def query_sample(tokens: int, n: int, seed: int, salt: int = 0) -> torch.Tensor:
    """A seeded uniform sample of ``n`` query tokens (sorted), or all when ``n`` is 0 or at
    least ``tokens``.

    Args:
        tokens: token count; n: sample size; seed, salt: the generator's seed parts.

    Returns:
        torch.Tensor: raster indices.
    """
    if n == 0 or n >= tokens:
        return torch.arange(tokens)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(salt))
    return torch.randperm(tokens, generator=gen)[:n].sort().values


@dataclass
class BlockPass:
    """One block on one image: distance, per-query distances, query maps and (for the
    rollout) the full ``(N, N)`` map."""

    distance_px: float
    query_distance_px: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    full: torch.Tensor | None = None


@torch.no_grad()
def block_maps(contrib, grid: TokenGrid, sample: torch.Tensor, map_tokens: dict[str, int], settings) -> BlockPass:
    """Interaction maps of one block for one image.

    Args:
        contrib: the block's contributions (:func:`~.definitions.decompose`).
        grid: its token grid with centres in pixels.
        sample: query tokens of the distance; map_tokens: query name -> token.
        settings: the :class:`InteractionSettings` (chunk budget, rollout).

    Returns:
        BlockPass: the block's numbers for this image.
    """
    n, prefix = grid.tokens, contrib.prefix
    device = getattr(contrib, "device", torch.device("cpu"))
    if settings.rollout:
        wanted = torch.arange(n)
    else:
        wanted = torch.unique(torch.cat([sample, torch.tensor(list(map_tokens.values()), dtype=torch.long)]))
    in_sample = torch.zeros(n, dtype=torch.bool)
    in_sample[sample] = True
    centres = grid.centres.float().to(device)
    num = torch.zeros(n, dtype=torch.float64)
    den = torch.zeros(n, dtype=torch.float64)
    full = torch.zeros(n, n) if settings.rollout else None
    maps = {}
    step = chunk_size(n + prefix, contrib.width, settings.chunk_mb)
    for queries in wanted.split(step):
        on_device = queries.to(device)
        c, _ = contrib.contributions(on_device + prefix)
        r = torch.linalg.vector_norm(c[:, prefix:], dim=-1)  # (Q, N)
        del c
        dist = torch.cdist(centres[on_device], centres)
        num[queries] = (r * dist).sum(1).double().cpu()
        r = r.cpu()
        den[queries] = r.sum(1).double()
        if full is not None:
            full[queries] = r
        for name, token in map_tokens.items():
            hit = (queries == token).nonzero()
            if len(hit):
                maps[name] = r[int(hit[0, 0])].reshape(grid.shape).clone()
    distance = float(num[in_sample].sum() / den[in_sample].sum().clamp_min(1e-300))
    per_query = num[sample] / den[sample].clamp_min(1e-300)
    return BlockPass(distance, per_query, maps, full)


def image_tensors(images, size: int) -> tuple[list[torch.Tensor], list[str], list[str]]:
    """Images as ``(3, H, W)`` tensors.

    Args:
        images: a ``(B, 3, H, W)`` or ``(3, H, W)`` tensor, a list of such tensors, or a
            list of image items / paths (loaded, resized to ``size`` and normalised as for
            the ERF); unreadable files are skipped.
        size: the side images from files are resized to.

    Returns:
        tuple: the tensors, their names and ``"path: reason"`` of each skipped file.
    """
    from ..io.images import ImageLoadError, erf_transform, load_rgb

    if isinstance(images, torch.Tensor):
        images = list(images) if images.ndim == 4 else [images]
    tensors, names, skipped = [], [], []
    transform = None
    for k, item in enumerate(images):
        if isinstance(item, torch.Tensor):
            tensors.append(item.float())
            names.append(f"tensor {k}")
            continue
        path = str(getattr(item, "path", item))
        transform = transform or erf_transform(size)
        try:
            tensors.append(transform(load_rgb(path)))
            names.append(path)
        except ImageLoadError as err:
            skipped.append(f"{path}: {err}")
    return tensors, names, skipped


def _plan(model: nn.Module, analysed: list[MixerBlock], size: int, settings, seed: int) -> dict:
    """Block name -> (token grid, sampled queries, map query tokens, accumulator)."""
    grids = {s: token_grid(model, size, s) for s in sorted({b.stage for b in analysed})}
    plan = {}
    for k, blk in enumerate(analysed):
        grid = grids[blk.stage]
        sample = query_sample(grid.tokens, settings.queries_sampled, seed, k)
        plan[blk.name] = (grid, sample, {q: query_token(grid, q) for q in settings.maps}, _Accumulator())
    return plan


def _notes(model: nn.Module, skipped_images: list[str]) -> list[str]:
    notes = [f"image skipped: {s}" for s in skipped_images]
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    if prefix:
        notes.append(f"{prefix} prefix token(s) left out of the maps and distances")
    return notes


@dataclass
class _Accumulator:
    """Per-block sums over images."""

    distances: list[float] = field(default_factory=list)
    per_query: torch.Tensor | None = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    first: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, one: BlockPass) -> None:
        self.distances.append(one.distance_px)
        self.per_query = one.query_distance_px if self.per_query is None else self.per_query + one.query_distance_px
        if not self.first:
            self.first = dict(one.maps)
        for name, m in one.maps.items():
            self.maps[name] = self.maps[name] + m if name in self.maps else m.clone()


def _one_image(model, image, blocks, plan, settings, rollout_maps) -> None:
    """Run the analysis of one image into ``plan`` (block name -> (grid, sample, maps, acc))."""
    inputs = capture_inputs(model, image, blocks)
    roll = Rollout() if settings.rollout else None
    prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
    last_grid = None
    for blk in blocks:
        if blk.skip_reason:
            continue
        grid, sample, map_tokens, acc = plan[blk.name]
        contrib = decompose(blk.mixer, inputs.pop(blk.name), grid.shape, prefix)
        one = block_maps(contrib, grid, sample, map_tokens, settings)
        acc.add(one)
        if roll is not None:
            roll.add(grid, one.full)
            last_grid = (grid, map_tokens)
    if roll is not None and last_grid is not None:
        for name, m in roll.maps(last_grid[1], tuple(image.shape[-2:])).items():
            rollout_maps[name] = rollout_maps.get(name, 0) + m


def interaction_maps(
    model: nn.Module,
    images,
    settings: InteractionSettings | None = None,
    *,
    run: RunContext | None = None,
    hooks: Hooks | None = None,
    name: str | None = None,
    weights: str = "",
    label: str | None = None,
    **overrides,
) -> InteractionResult:
    """Interaction maps and mean interaction distance of every analysed block (module docstring).

    Args:
        model: a model of this package, a timm MetaFormer or a timm ViT/DeiT, in eval mode
            (left as found).
        images: tensors or image files (see :func:`image_tensors`).
        settings: the :class:`InteractionSettings` (default: the defaults).
        run: the run context (its device and seed; default CPU, seed 0).
        hooks: progress (one per image) and log messages.
        name: the model's name in the result (default: its class name).
        weights: the weights' description recorded in the result.
        label: the result's name in file names (default: ``name``).
        **overrides: settings fields to change, e.g. ``size=64``.

    Returns:
        InteractionResult: per block the distances and maps, the skipped blocks and reasons.

    Raises:
        NoMixersError: the model has no token mixers, or none that is decomposed.
    """
    from .blocks import NoMixersError

    settings = InteractionSettings.from_overrides(settings, **overrides)
    run, hooks = run or RunContext(), hooks or Hooks()
    start = time.perf_counter()
    tensors, image_names, skipped_images = image_tensors(images, settings.size)
    if not tensors:
        raise ValueError("no usable image" + (f" ({skipped_images[0]})" if skipped_images else ""))
    blocks = find_blocks(model, settings.blocks)
    analysed = [b for b in blocks if not b.skip_reason]
    if not analysed:
        why = blocks[0].skip_reason
        raise NoMixersError(f"{name or type(model).__name__}: no block has a known token mixer ({why})")
    size = tuple(tensors[0].shape[-2:])
    plan = _plan(model, analysed, size[0], settings, run.seed)
    device = next(model.parameters()).device
    rollout_maps: dict[str, torch.Tensor] = {}
    for image in tensors:
        with torch.no_grad():
            _one_image(model, image[None].to(device), blocks, plan, settings, rollout_maps)
        hooks.progress(1)
    result_blocks = [_block_result(blk, plan[blk.name], len(tensors)) for blk in analysed]
    rollout = {k: (v / len(tensors)).float().numpy() for k, v in rollout_maps.items()} if settings.rollout else None
    return InteractionResult(
        model=name or type(model).__name__,
        label=label or name or type(model).__name__,
        weights=weights,
        settings=settings.describe(),
        size=size,
        blocks=result_blocks,
        skipped=[
            {"stage": b.stage, "block": b.block, "mixer": b.mixer_name, "reason": b.skip_reason}
            for b in blocks
            if b.skip_reason
        ],
        images=image_names,
        rollout=rollout,
        notes=_notes(model, skipped_images),
        seconds=time.perf_counter() - start,
    )


def _block_result(blk: MixerBlock, entry, n_images: int) -> BlockInteractions:
    grid, sample, map_tokens, acc = entry
    w = grid.shape[1]
    return BlockInteractions(
        stage=blk.stage,
        block=blk.block,
        mixer=blk.mixer_name,
        grid=grid.shape,
        distances_px=acc.distances,
        queries=len(sample),
        maps={k: (v / n_images).numpy() for k, v in acc.maps.items()},
        first_maps={k: v.numpy() for k, v in acc.first.items()},
        query_tokens={q: (t // w, t % w) for q, t in map_tokens.items()},
        sample=sample.numpy(),
        query_distance_px=(acc.per_query / n_images).numpy(),
    )
