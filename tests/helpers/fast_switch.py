"""Run a test's model with the fast paths on or off (for tests parametrized over both)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from hpx_analysis.models.fast import fast_paths, set_enabled

FAST_MODES = [False, True]
FAST_IDS = ["plain", "fast"]


@contextlib.contextmanager
def fast_mode(model: nn.Module, on: bool) -> Iterator[None]:
    """``fast_paths(model)`` with the switch set to ``on`` (whatever HPX_ANALYSIS_FAST says);
    with ``on`` at least one module must have been swapped."""
    set_enabled(on)
    try:
        with fast_paths(model) as swapped:
            assert (swapped > 0) == on
            yield
    finally:
        set_enabled(None)
