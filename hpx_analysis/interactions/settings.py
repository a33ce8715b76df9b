"""The settings of an interaction analysis and the parsing of its query points and blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..settings import Settings

__all__ = ["InteractionSettings", "NAMED_QUERIES", "parse_maps", "parse_blocks"]

# Named query points, placed on each block's own token grid of h x w tokens.
NAMED_QUERIES = {
    "centre": lambda h, w: (h // 2, w // 2),
    "edge": lambda h, w: (h // 2, 0),  # middle of the left edge
    "corner": lambda h, w: (0, 0),  # top-left
}
_PIXEL = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_BLOCK = re.compile(r"^\s*(\d+)\s*\.\s*(\d+)\s*$")


def parse_maps(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Map queries from ``"centre,edge,corner"`` or ``"ROW:COL"`` items (input pixels).

    Args:
        text: comma-separated names (``centre``, ``edge``, ``corner``) and ``ROW:COL`` pixel
            positions, or a sequence of them.

    Returns:
        tuple[str, ...]: the queries, names lower-cased and pixel positions as ``"ROW:COL"``.

    Raises:
        ValueError: an item is neither a known name nor ``ROW:COL``, or the list is empty.
    """
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p).strip() for p in text]
    items = [p for p in items if p]
    out = []
    for item in items:
        match = _PIXEL.match(item)
        if match:
            out.append(f"{int(match[1])}:{int(match[2])}")
        elif item.lower() in NAMED_QUERIES:
            out.append(item.lower())
        else:
            raise ValueError(f"unknown map query {item!r}: use {', '.join(NAMED_QUERIES)} or ROW:COL in input pixels")
    if not out:
        raise ValueError("no map query given")
    return tuple(dict.fromkeys(out))


def parse_blocks(text: str | None) -> tuple[tuple[int, int], ...] | None:
    """Blocks from ``"all"`` (None) or ``"STAGE.BLOCK,..."`` (counted from 0).

    Args:
        text: ``"all"``, None, or comma-separated ``STAGE.BLOCK`` items.

    Returns:
        tuple | None: ``((stage, block), ...)`` in the order given, or None for all blocks.

    Raises:
        ValueError: an item is not ``STAGE.BLOCK``.
    """
    if text is None or str(text).strip().lower() == "all":
        return None
    out = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        match = _BLOCK.match(item)
        if not match:
            raise ValueError(f"block {item.strip()!r} is not STAGE.BLOCK (e.g. 0.0, 2.5) or all")
        out.append((int(match[1]), int(match[2])))
    if not out:
        raise ValueError("no block given (use all or STAGE.BLOCK,...)")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class InteractionSettings(Settings):
    """What an interaction analysis computes.

    Args:
        size: input side in pixels (images are resized to ``size x size``; the probe images
            are 64 px and are used as they are).
        maps: map queries: ``centre``, ``edge`` (middle of the left edge), ``corner``
            (top-left) on each block's token grid, or ``"ROW:COL"`` input pixels (the token
            whose centre is nearest).
        blocks: ``((stage, block), ...)`` to analyse, or None for all blocks.
        queries_sampled: query tokens per block for the mean distance, a seeded uniform
            sample (the same for every image); 0 or at least the token count: all tokens.
        rollout: also combine the block maps into input-pixel maps (a heuristic).
        chunk_mb: memory for one chunk of queries' contributions (MiB); the peak is a few
            times this.
    """

    size: int = 224
    maps: tuple[str, ...] = ("centre", "edge", "corner")
    blocks: tuple[tuple[int, int], ...] | None = None
    queries_sampled: int = 256
    rollout: bool = False
    chunk_mb: int = 256

    def __post_init__(self):
        object.__setattr__(self, "maps", parse_maps(self.maps))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple((int(s), int(b)) for s, b in self.blocks))
        if self.size < 8:
            raise ValueError(f"size must be at least 8 px, got {self.size}")
        if self.queries_sampled < 0:
            raise ValueError(f"queries_sampled must be 0 (all) or positive, got {self.queries_sampled}")
        if self.chunk_mb < 1:
            raise ValueError(f"chunk_mb must be at least 1, got {self.chunk_mb}")
