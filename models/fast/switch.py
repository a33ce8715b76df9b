"""The one switch of the fast paths: :func:`enabled` and :func:`fast_paths`.

``HPX_ANALYSIS_FAST`` (``1``, the default, or ``0``) says whether ``fast_paths(model)``
swaps anything; :func:`set_enabled` overrides it for the process (tests, benchmarks).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from torch import nn

from .modules import FAST_CLASSES

__all__ = ["ENV_VAR", "enabled", "set_enabled", "fast_paths", "fast_path_record", "reset_record"]

ENV_VAR = "HPX_ANALYSIS_FAST"

_override: bool | None = None
_lock = threading.Lock()
_FAST = frozenset(FAST_CLASSES.values())
_ran: set[str] = set()  # names of the plain classes swapped to their fast class in this process


def enabled() -> bool:
    """Whether the fast paths are on: :func:`set_enabled`'s flag if one is set, else the
    environment variable ``HPX_ANALYSIS_FAST`` (``0`` or ``1``; unset means ``1``)."""
    if _override is not None:
        return _override
    value = os.environ.get(ENV_VAR, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{ENV_VAR} must be 0 (plain reference paths) or 1 (fast paths), got {value!r}")
    return value == "1"


def set_enabled(flag: bool | None) -> None:
    """Switch the fast paths on or off for this process; ``None`` goes back to the environment."""
    global _override
    if flag is not None and not isinstance(flag, bool):
        raise TypeError(f"set_enabled takes True, False or None, got {flag!r}")
    _override = flag


@contextlib.contextmanager
def fast_paths(model: nn.Module) -> Iterator[int]:
    """Swap every supported module of ``model`` (``model`` itself included) to its fast class
    (:data:`.modules.FAST_CLASSES`) for the duration, when :func:`enabled`; yields how many
    were swapped. Parameters, buffers, state dict and hooks are untouched; every class is
    restored on exit, also after an exception. Modules already fast (nested or repeated use)
    are left to the block that swapped them."""
    swapped: list[tuple[nn.Module, type]] = []
    if enabled():
        with _lock:
            for module in model.modules():
                plain = type(module)
                fast = FAST_CLASSES.get(plain)
                if fast is not None and plain not in _FAST:
                    module.__class__ = fast
                    swapped.append((module, plain))
                    _ran.add(plain.__name__)
    try:
        yield len(swapped)
    finally:
        with _lock:
            for module, plain in reversed(swapped):
                module.__class__ = plain


def fast_path_record() -> dict:
    """What the outputs record of the fast paths: whether they are on, the module classes
    that ran through their fast class in this process, and the private-operator paths
    probed so far with ``"on"`` or why they fell back to the plain computation.

    Returns:
        dict: ``{"enabled": bool, "ran": [class names], "operators": {path: "on" | "off: reason"}}``.
    """
    from .probe import probed_report

    return {"enabled": enabled(), "ran": sorted(_ran), "operators": probed_report()}


def reset_record() -> None:
    """Forget which fast classes ran (for tests)."""
    with _lock:
        _ran.clear()
