"""Checks of a job's maps against its models before any map is computed.

:func:`check_maps` refuses maps that would share their files (a stage, layer or size given
twice); :func:`check_units` refuses, with the valid choices, a stage a model does not have
(its stage range), a layer it does not have (the nearest module names) and a layer whose
output does not depend on the input (it has no receptive field: e.g. the implicit filter
of a Hyena mixer, computed from positions alone).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from .settings import ErfSettings
from .unit import ErfUnit

__all__ = ["check_maps", "check_units", "stage_count", "nearest_modules"]


def _error(message: str) -> Exception:
    from .compute import ErfError

    return ErfError(message)


def check_maps(maps: Sequence[ErfSettings]) -> None:
    """Refuse maps that would write the same files (the same unit and size twice).

    Args:
        maps: the job's maps.

    Raises:
        ErfError: a unit and size repeat.
    """
    seen: set[tuple] = set()
    for s in maps:
        key = (s.unit.suffix, s.size)
        if key in seen:
            what = s.unit.suffix.lstrip("_") or "the last feature map"
            raise _error(f"the map {what} at size {s.size or 'default'} is asked for twice; give each stage, "
                         "layer and size once")  # fmt: skip
        seen.add(key)


def stage_count(model: nn.Module) -> int | None:
    """How many stages ``forward_intermediates`` can return (timm's ``feature_info``).

    Args:
        model: the model.

    Returns:
        int | None: the number of stages, or None when the model does not say.
    """
    info = getattr(model, "feature_info", None)
    info = getattr(info, "info", info)  # timm's FeatureInfo wraps a list
    return len(info) if isinstance(info, (list, tuple)) and info else None


def nearest_modules(model: nn.Module, name: str, n: int = 5) -> list[str]:
    """Module names of ``model`` closest to ``name`` (difflib), then names containing it.

    Args:
        model: the model.
        name: the name asked for.
        n: how many to give at most.

    Returns:
        list[str]: up to ``n`` names.
    """
    names = [m for m, _ in model.named_modules() if m]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    close += [m for m in names if name and name in m and m not in close]
    return close[:n]


def _check_structure(model: nn.Module, unit: ErfUnit, name: str) -> None:
    if unit.stage is not None:
        if not hasattr(model, "forward_intermediates"):
            raise _error(f"{name} has no forward_intermediates() for --stage; use --layer NAME instead")
        count = stage_count(model)
        if count is not None and unit.stage >= count:
            raise _error(f"{name} has stages 0-{count - 1}; stage {unit.stage} does not exist")
    if unit.layer is not None and unit.layer not in dict(model.named_modules()):
        close = nearest_modules(model, unit.layer)
        hint = f"; nearest names: {', '.join(close)}" if close else "; see model.named_modules()"
        raise _error(f"{name} has no module named {unit.layer!r}{hint}")


def check_units(model: nn.Module, maps: Sequence[ErfSettings], name: str, items: Sequence = ()) -> None:
    """Refuse, before any work, a unit the model cannot give an ERF of.

    Stages and layers are checked by name and range; a layer's output is computed once on a
    zero input of the map's size (where the size is known) to check that it depends on the
    input.

    Args:
        model: the model (left as found).
        maps: the maps to compute on it.
        name: the model's name in messages.
        items: the inputs (a first tensor gives the size when the maps have none).

    Raises:
        ErfError: with the valid stage range, the nearest module names, or the reason.
    """
    from .compute import frozen_for_erf
    from .extras import input_side

    for settings in maps:
        _check_structure(model, settings.unit, name)
    layered = [s for s in maps if s.unit.layer is not None]
    done: set[str] = set()
    for settings in layered:
        if settings.unit.layer in done or (settings.size is None and settings.preprocess != "squash"):
            continue
        done.add(settings.unit.layer)
        try:
            side = input_side(model, settings, items)
        except (TypeError, ValueError, RuntimeError):
            continue
        param = next(model.parameters(), None)
        kwargs = {"device": param.device, "dtype": param.dtype} if param is not None else {}
        x = torch.zeros(1, 3, *side, **kwargs).requires_grad_(True)
        with frozen_for_erf(model), torch.enable_grad():
            try:
                settings.unit.feature_map(model, x)  # raises ErfError when the output ignores x
            except RuntimeError as err:
                if isinstance(err, ValueError):  # an ErfError (ErfModelError)
                    raise
                continue  # the model fails on this input: the run itself says so
