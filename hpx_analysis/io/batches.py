"""Batches of evaluation images for sweeps: load, transform, stack, keep labels.

Unreadable images are skipped and reported (``skipped``) rather than ending the sweep;
the caller records them with the results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .checks import whole_number
from .images import ImageItem, ImageLoadError, load_rgb

__all__ = ["ImageBatches"]


@dataclass
class ImageBatches:
    """Iterate ``(images, labels)`` over ``items`` in order, ``batch_size`` at a time.

    Args:
        items: the images to read.
        transform: PIL image -> ``(3, H, W)`` tensor (the same size for every image).
        batch_size: images per batch, a whole number of at least 1 (the last batch may be
            smaller).
        with_labels: yield the items' labels as an int64 tensor (every item must then have
            one); else ``labels`` is None.
        device: where the batches are put.
        skipped: filled with ``(path, reason)`` of the images that could not be read during
            the last iteration.

    Raises:
        TypeError: ``batch_size`` is not a whole number.
        ValueError: ``batch_size`` is below 1.
    """

    items: Sequence[ImageItem]
    transform: Callable
    batch_size: int = 16
    with_labels: bool = False
    device: torch.device | str = "cpu"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        self.batch_size = whole_number(self.batch_size, "batch_size", minimum=1)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        self.skipped.clear()
        xs, ys = [], []
        for item in self.items:
            try:
                img = load_rgb(item.path)
            except ImageLoadError as e:
                self.skipped.append((str(item.path), str(e)))
                continue
            xs.append(self.transform(img))
            ys.append(item.label)
            if len(xs) == self.batch_size:
                yield self._stack(xs, ys)
                xs, ys = [], []
        if xs:
            yield self._stack(xs, ys)

    def _stack(self, xs, ys):
        x = torch.stack(xs).to(self.device)
        y = torch.tensor([int(v) for v in ys], dtype=torch.long, device=self.device) if self.with_labels else None
        return x, y
