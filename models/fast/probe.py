"""One check per private operator path, run once per process at its first use.

A fast path that calls a private operator (oneDNN's reordered-weight products, MKL's DFTI
through ctypes) registers a check: a tiny real call compared with the plain computation
by ``torch.allclose``. :func:`passes` runs it the first time the path is asked for. Where
the operator is missing, raises or gives a different result, the path is off for the rest
of the process, the plain computation is used, and one warning says which path is off and
why. A changed operator signature in a new PyTorch therefore costs speed, not a crash.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Check", "register", "passes", "available", "probe_report", "probed_report", "reset", "compare"]


@dataclass(frozen=True)
class Check:
    """A probe: ``run()`` returns None when the fast path works, else the reason it does not
    (it may also raise); ``fallback`` names the plain computation used instead."""

    name: str
    run: Callable[[], str | None]
    fallback: str


_checks: dict[str, Check] = {}
_results: dict[str, str | None] = {}  # name -> None (on) or the reason it is off
_lock = threading.Lock()


def register(check: Check) -> None:
    """Make ``check`` known (done by the module of each fast path, at import)."""
    _checks[check.name] = check


def compare(got: torch.Tensor, expected: torch.Tensor, what: str) -> str | None:
    """None when ``got`` matches ``expected`` (shape, dtype, ``torch.allclose``), else why not."""
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return f"{what} gave {got.dtype} {tuple(got.shape)}, expected {expected.dtype} {tuple(expected.shape)}"
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        return f"{what} differs from the plain result (max |difference| {float((got - expected).abs().max()):.3g})"
    return None


def _run(check: Check) -> str | None:
    try:
        reason = check.run()
    except Exception as exc:  # noqa: BLE001  (any failure of a private operator turns the path off)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}"
    if reason is not None:
        warnings.warn(
            f"hpx_analysis fast path '{check.name}' is off ({reason}); using {check.fallback}",
            RuntimeWarning,
            stacklevel=4,
        )
    return reason


def passes(name: str) -> bool:
    """Whether the fast path ``name`` works in this process (probed at the first call)."""
    if name in _results:
        return _results[name] is None
    with _lock:
        if name not in _results:
            _results[name] = _run(_checks[name])
    return _results[name] is None


def available() -> dict[str, bool]:
    """Every registered private-operator path and whether it works here (probing those not
    probed yet)."""
    return {name: passes(name) for name in sorted(_checks)}


def probe_report() -> dict[str, str]:
    """Every registered path: ``"on"``, or ``"off: <reason>"`` (probing those not probed yet)."""
    available()
    return {name: "on" if _results[name] is None else f"off: {_results[name]}" for name in sorted(_checks)}


def probed_report() -> dict[str, str]:
    """The paths probed so far in this process (none is probed by asking): ``"on"`` or
    ``"off: <reason>"``."""
    return {name: "on" if reason is None else f"off: {reason}" for name, reason in sorted(_results.items())}


def reset(name: str | None = None) -> None:
    """Forget the result of probe ``name`` (all with None), so that the next use probes again
    (for tests)."""
    with _lock:
        if name is None:
            _results.clear()
        else:
            _results.pop(name, None)
