"""Which output unit an ERF is taken of, and by which published protocol.

An :class:`ErfUnit` names a feature map and how one scalar per image is read off it:

- the map: the last feature map (default, ``forward_features``), a stage
  (``stage=k``: timm's ``forward_intermediates(indices=[k])``) or any module
  (``layer=NAME``: its output, by its name in ``named_modules()``). NCHW maps are taken as
  they are; channels-last maps (``(B, H, W, C)``, e.g. this project's MetaFormer blocks or
  Swin) are recognised by their shape against the input's aspect ratio; token sequences
  ``(B, N, C)`` drop the model's prefix tokens (``num_prefix_tokens``) and are laid back on
  the patch grid;
- the centre unit: ``(H // 2, W // 2)``. On an even grid there is no middle position: the
  default (``even="after"``) takes the lower-right of the central 2 x 2 (RepLKNet's
  script); ``even="before"`` takes the upper-left, ``((H - 1) // 2, (W - 1) // 2)``;
- the protocol:

  * ``"replknet"`` (Luo et al. / RepLKNet / SLaK): the scalar is ``sum_c ReLU(f_c)`` at
    the centre unit; the per-image map is ``sum_colour ReLU(d scalar / d x)``; the
    result is the mean over images;
  * ``"bmvc"`` (Kim et al., BMVC 2023): the scalar is the channel mean of the map at the
    centre unit, without ReLU; for token grids of ViT-style models the centre of an even
    grid is the upper-left of the central 2 x 2 (unless ``even`` says otherwise); the
    per-image map is the input gradient averaged over the colour channels, then clamped
    at 0; the sum over images is normalised to sum 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ErfUnit", "PROTOCOLS", "EVEN_RULES", "centre_index"]

PROTOCOLS = ("replknet", "bmvc")
EVEN_RULES = ("after", "before")


class _Stop(Exception):
    """Raised by the capture hook once the wanted module has run (the rest is not needed)."""


def centre_index(h: int, w: int, even: str = "after") -> tuple[int, int]:
    """The centre unit of an ``h x w`` grid: ``(h // 2, w // 2)``; with ``even="before"`` the
    upper-left of the central 2 x 2 on even sides, ``((h - 1) // 2, (w - 1) // 2)``.

    Args:
        h: the grid's height.
        w: its width.
        even: ``"after"`` or ``"before"``.

    Returns:
        tuple[int, int]: (row, column).
    """
    if even not in EVEN_RULES:
        raise ValueError(f"even must be one of {EVEN_RULES}, got {even!r}")
    return (h // 2, w // 2) if even == "after" else ((h - 1) // 2, (w - 1) // 2)


@dataclass(frozen=True)
class ErfUnit:
    """The feature map, centre rule and protocol of an ERF (see the module docstring).
    ``even=None`` is the protocol's own rule."""

    stage: int | None = None
    layer: str | None = None
    protocol: str = "replknet"
    even: str | None = None

    def __post_init__(self):
        from .compute import ErfError

        if self.protocol not in PROTOCOLS:
            raise ErfError(f"unknown ERF protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.even is not None and self.even not in EVEN_RULES:
            raise ErfError(f"unknown even-grid rule {self.even!r}; choose one of {', '.join(EVEN_RULES)}")
        if self.stage is not None and self.layer is not None:
            raise ErfError("give a stage or a layer, not both")
        if self.stage is not None and self.stage < 0:
            raise ErfError(f"stages count from 0, got {self.stage}")

    @property
    def is_default(self) -> bool:
        """RepLKNet's protocol on the last feature map with the default centre."""
        return self.stage is None and self.layer is None and self.protocol == "replknet" and self.even != "before"

    # -------------------------------------------------------------------- naming
    @property
    def suffix(self) -> str:
        """What the map adds to a run label: ``_s<k>``, ``_<layer>`` or nothing."""
        if self.stage is not None:
            return f"_s{self.stage}"
        if self.layer is not None:
            return "_" + re.sub(r"[^A-Za-z0-9_.-]", "-", self.layer)
        return ""

    def describe(self) -> dict:
        """The non-default choices (empty for the default unit: records stay as they were).

        Returns:
            dict: ``stage``, ``layer``, ``protocol``, ``even_grid_centre`` where not the default.
        """
        out: dict = {}
        if self.stage is not None:
            out["stage"] = self.stage
        if self.layer is not None:
            out["layer"] = self.layer
        if self.protocol != "replknet":
            out["protocol"] = self.protocol
        if self.even is not None:
            out["even_grid_centre"] = self.even
        return out

    # -------------------------------------------------------------------- the map
    def feature_map(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The chosen map as ``(B, C, H, W)`` and whether it is a grid of tokens (ViT-style).

        Args:
            model: the model.
            x: the input batch.

        Returns:
            tuple[torch.Tensor, bool]: the map and whether it is a token grid.
        """
        from .compute import ErfError, _tokens_to_grid, last_feature_map

        tokens = hasattr(model, "num_prefix_tokens")
        if self.stage is None and self.layer is None:
            return last_feature_map(model, x), tokens
        if self.stage is not None:
            if not hasattr(model, "forward_intermediates"):
                raise ErfError(f"{type(model).__name__} has no forward_intermediates(); use --layer NAME instead")
            try:
                out = model.forward_intermediates(x, indices=[self.stage], intermediates_only=True, stop_early=True)
            except (IndexError, AssertionError, ValueError) as err:
                raise ErfError(f"{type(model).__name__} has no stage {self.stage}: {err}") from None
            f = out[-1] if isinstance(out, (list, tuple)) else out
            _check_depends(f, x, f"stage {self.stage}")
            if f.ndim == 3:
                return _tokens_to_grid(model, f, x.shape[-2:]), True
            return f, tokens
        modules = dict(model.named_modules())
        if self.layer not in modules:
            from .preflight import nearest_modules

            close = nearest_modules(model, self.layer)
            hint = f"; nearest names: {', '.join(close)}" if close else ""
            raise ErfError(f"{type(model).__name__} has no module named {self.layer!r}{hint}")
        captured: list[torch.Tensor] = []

        def hook(_module, _inputs, output):
            captured.append(output[0] if isinstance(output, (list, tuple)) else output)
            raise _Stop

        handle = modules[self.layer].register_forward_hook(hook)
        try:
            model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise ErfError(f"module {self.layer!r} did not run in the forward pass")
        f = captured[0]
        if not isinstance(f, torch.Tensor):
            raise ErfError(f"module {self.layer!r} gives a {type(f).__name__}, not a tensor; choose another layer")
        _check_depends(f, x, f"the output of {self.layer!r}")
        if f.ndim == 3:
            return _tokens_to_grid(model, f, x.shape[-2:]), True
        if f.ndim != 4:
            raise ErfError(f"module {self.layer!r} gives a tensor of shape {tuple(f.shape)}; expected a spatial map")
        return (f.permute(0, 3, 1, 2) if _channels_last(f, x.shape[-2:]) else f), tokens

    def centre(self, h: int, w: int, tokens: bool = False) -> tuple[int, int]:
        """The centre unit on an ``h x w`` map under this unit's rule.

        Args:
            h: the map's height.
            w: its width.
            tokens: whether the map is a grid of tokens.

        Returns:
            tuple[int, int]: (row, column).
        """
        even = self.even or ("before" if self.protocol == "bmvc" and tokens else "after")
        return centre_index(h, w, even)

    # -------------------------------------------------------------------- the protocol
    def scalar(self, fmap_tokens: tuple[torch.Tensor, bool]) -> torch.Tensor:
        """One scalar per image from the map (see the protocols).

        Args:
            fmap_tokens: the map and whether it is a token grid (:meth:`feature_map`).

        Returns:
            torch.Tensor: ``(B,)``.
        """
        f, tokens = fmap_tokens
        i, j = self.centre(*f.shape[-2:], tokens=tokens)
        v = f[:, :, i, j]
        return v.mean(1) if self.protocol == "bmvc" else torch.relu(v).sum(1)

    def input_map(self, grad: torch.Tensor) -> torch.Tensor:
        """The per-image map ``(B, H, W)`` from the input gradient ``(B, 3, H, W)``.

        Args:
            grad: the input gradient.

        Returns:
            torch.Tensor: the maps.
        """
        if self.protocol == "bmvc":
            return grad.mean(1).clamp_min(0)
        return torch.relu(grad).sum(1)

    def finish(self, mean):
        """The protocol's last step on the mean map (bmvc: normalised to sum 1).

        Args:
            mean: the mean map over images.

        Returns:
            the finished map.
        """
        if self.protocol == "bmvc":
            total = mean.sum()
            return mean / total if total > 0 else mean
        return mean


def _check_depends(f: torch.Tensor, x: torch.Tensor, what: str) -> None:
    """Refuse a map that does not depend on the input ``x`` (with gradients on, an input that
    needs them and frozen parameters, such a map needs none): it has no receptive field."""
    if torch.is_grad_enabled() and x.requires_grad and not f.requires_grad:
        from .compute import ErfError

        raise ErfError(
            f"{what} does not depend on the input image (it is computed from the weights or positions "
            "alone), so it has no receptive field; choose a layer on the path from the image"
        )


def _channels_last(f: torch.Tensor, image_size) -> bool:
    """Whether a 4D activation is ``(B, H, W, C)``: its axes 1, 2 follow the input's aspect
    ratio and axes 2, 3 do not (ambiguous shapes are taken as NCHW)."""
    ih, iw = image_size

    def spatial(a: int, b: int) -> bool:
        return a * iw == b * ih and a <= ih

    return spatial(f.shape[1], f.shape[2]) and not spatial(f.shape[2], f.shape[3])
