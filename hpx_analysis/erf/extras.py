"""What an ERF map records besides its matrix: the unit's position in input pixels and, with
full metrics, the theoretical receptive field and the per-image maps.

:meth:`MapExtras.measure` finds them before the run (the per-image collector then sees every
batch); :meth:`MapExtras.fields` gives them as fields of the
:class:`~hpx_analysis.erf.result.ErfResult` once the run is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .settings import ErfSettings

__all__ = ["MapExtras", "input_side", "both"]


def input_side(model: nn.Module, settings: ErfSettings, items) -> tuple[int, int]:
    """The side of the model inputs.

    Args:
        model: the model (its timm data config when no size is set).
        settings: the map's settings (``size``).
        items: the inputs (a first tensor gives its own side when no size is set).

    Returns:
        tuple[int, int]: ``size`` x ``size``, else a first tensor's side, else the input
        size of the model's timm data config.
    """
    if settings.size is not None:
        return (int(settings.size), int(settings.size))
    from .compute import KeyedInput

    first = next(iter(items), None)
    first = first.item if isinstance(first, KeyedInput) else first
    if isinstance(first, torch.Tensor) and settings.preprocess == "squash":
        return (int(first.shape[-2]), int(first.shape[-1]))
    from timm.data import resolve_data_config

    return tuple(int(v) for v in resolve_data_config(model=model)["input_size"][1:])


def both(first: Callable | None, second: Callable | None) -> Callable | None:
    """One per-image collector calling ``first`` and ``second`` (either may be None).

    Args:
        first: a collector ``(keys, maps) -> None`` or None.
        second: another one or None.

    Returns:
        Callable | None: the combined collector, or None when both are None.
    """
    if first is None or second is None:
        return first or second

    def call(keys, maps) -> None:
        first(keys, maps)
        second(keys, maps)

    return call


@dataclass(frozen=True)
class MapExtras:
    """The unit's position and the full metrics' parts of one map.

    Args:
        position: :func:`~hpx_analysis.erf.geometry.unit_position` (None: not measured).
        trf: :func:`~hpx_analysis.erf.geometry.theoretical_rf` (None without full metrics).
        per_image: the :class:`~hpx_analysis.erf.spread.PerImage` collector (None without
            full metrics).
    """

    position: dict | None = None
    trf: dict | None = None
    per_image: object | None = None

    @classmethod
    def measure(cls, model: nn.Module, items, settings: ErfSettings, seed: int = 0) -> MapExtras:
        """The position of ``settings.unit`` and, with full metrics, the theoretical receptive
        field and a per-image collector around that position.

        Args:
            model: the model.
            items: the inputs (for their side when ``settings.size`` is None).
            settings: the map's settings.
            seed: the seed of the random inputs that find the theoretical receptive field.

        Returns:
            MapExtras: the measured parts.
        """
        from .geometry import theoretical_rf, unit_position

        side = input_side(model, settings, items)
        position = unit_position(model, side, settings.unit)
        if not settings.with_full_metrics:
            return cls(position=position)
        from .spread import PerImage

        trf = theoretical_rf(model, side, settings.unit, seed=seed)
        per_image = PerImage(keep=settings.save_per_image, centre=position["centre_px"])
        return cls(position, {k: trf[k] for k in ("pixels", "rows", "cols")}, per_image)

    def fields(self) -> dict:
        """The parts as :class:`~hpx_analysis.erf.result.ErfResult` fields (after the run).

        Returns:
            dict: ``position`` when measured; with full metrics also ``trf``,
            ``full_metrics``, ``per_image``, ``std`` and ``spread``.
        """
        out: dict = {} if self.position is None else {"position": self.position}
        if self.per_image is not None:
            out.update(
                trf=self.trf,
                full_metrics=True,
                per_image=self.per_image,
                std=self.per_image.std(),
                spread=self.per_image.spread(),
            )
        return out
