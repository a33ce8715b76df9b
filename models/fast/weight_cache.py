"""Tensors derived from constant parameters, computed once and kept while they stay valid.

The fixed-weight paths (eval mode, frozen parameters: every analysis here) use forms of a
weight that cost something to make: a weight reordered for oneDNN (:mod:`.packed_linear`),
the stacked phase kernel of a strided convolution (:mod:`.strided_conv`). :func:`derived`
keeps them under the parameter they come from (weakly: the entries go with the parameter)
and a recipe name, and makes them again when the parameter, or a tensor the recipe depends
on, has been changed in place or given new storage (storage address and version counter
are compared). Loading weights (``load_state_dict``) or editing them under
``torch.no_grad()`` is therefore seen; writes through ``.data`` bypass the version counter
and are not, as with the kernel-spectrum cache of the long filters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["derived"]

T = TypeVar("T")

_cache: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _state(tensors: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)


def derived(owner: torch.Tensor, recipe: str, build: Callable[[], T], depends: tuple[torch.Tensor, ...] = ()) -> T:
    """``build()`` (computed without autograd), cached under ``owner`` and ``recipe``;
    rebuilt when ``owner`` or a tensor in ``depends`` has changed."""
    state = _state((owner, *depends))
    entries = _cache.get(owner)
    if entries is None:
        entries = _cache[owner] = {}
    hit = entries.get(recipe)
    if hit is None or hit[0] != state:
        with torch.no_grad():
            hit = entries[recipe] = (state, build())
    return hit[1]
