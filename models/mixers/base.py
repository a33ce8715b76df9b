"""The small explicit interface that long-convolution mixers offer to analyzers.

A long-convolution mixer (HyenaPixel, bidirectional or causal Hyena, their explicit and
separable ablations) exposes:

- ``kernel_ndim``: 2 for 2D kernels ``(C, kh, kw)``, 1 for 1D kernels ``(C, Lf)``;
- ``feature_size``: the ``(h, w)`` feature map the kernel was built for (56x56 for the
  first stage of a 224 px model);
- ``effective_kernel()``: the kernel the mixer applies now (after the decay window and
  after any truncation), detached, float32;
- ``window()``: the decay window ``exp(-D |delta|) + shift`` on the kernel grid, or
  ``None`` where the mixer has none (explicit kernels);
- ``set_truncation(rel_size, shape)``: zero every tap outside a centred window whose
  side is ``rel_size`` times the feature-map size (per axis; 1D kernels use the token
  count ``h * w``) for all following forwards; ``None`` removes it. ``truncation`` reads
  it back.

Truncation keeps a tap at integer offset ``d`` from the kernel centre when
``|d| <= (rel_size * n - 1) / 2`` on every axis (``shape="square"``) or when the
Euclidean offset satisfies it (``shape="disk"``). ``rel_size * n >= K`` keeps the whole
kernel; ``rel_size = K / n`` is exactly the full kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Truncation", "centred_mask", "LongConvMixer", "is_long_conv_mixer"]

TRUNCATION_SHAPES = ("square", "disk")


@dataclass(frozen=True)
class Truncation:
    """A centred window outside which a long kernel's taps are zeroed (see the module docstring).

    Args:
        rel_size: the window's side over the feature-map size (per axis), positive.
        shape: ``square`` or ``disk``.

    Raises:
        ValueError: an unknown shape or a rel_size that is not positive.
    """

    rel_size: float
    shape: str = "square"

    def __post_init__(self):
        if self.shape not in TRUNCATION_SHAPES:
            raise ValueError(f"truncation shape must be one of {TRUNCATION_SHAPES}, got {self.shape!r}")
        if not self.rel_size > 0:
            raise ValueError(f"relative truncation size must be positive, got {self.rel_size}")


def centred_mask(kernel_shape: tuple[int, ...], feature_size: tuple[int, ...], trunc: Truncation) -> torch.Tensor:
    """The taps of a kernel that a truncation keeps.

    Args:
        kernel_shape: the kernel's sizes (odd, centred).
        feature_size: the feature-map size per kernel axis (the token count for 1D kernels).
        trunc: the truncation.

    Returns:
        torch.Tensor: a bool tensor of ``kernel_shape``, True inside the centred window.
    """
    limits = [(trunc.rel_size * n - 1) / 2 for n in feature_size]
    offsets = [torch.arange(K, dtype=torch.float64) - K // 2 for K in kernel_shape]
    grids = torch.meshgrid(*offsets, indexing="ij")
    if trunc.shape == "square" or len(kernel_shape) == 1:
        keep = torch.ones(kernel_shape, dtype=torch.bool)
        for g, lim in zip(grids, limits):
            keep &= g.abs() <= lim + 1e-9
        return keep
    # disk (ellipse where the feature map is not square), in units of each axis's limit
    if min(limits) < 0:
        return torch.zeros(kernel_shape, dtype=torch.bool)
    r2 = sum(
        (g / max(lim, 1e-9)) ** 2 if lim > 0 else torch.where(g == 0, 0.0, float("inf"))
        for g, lim in zip(grids, limits)
    )
    return r2 <= 1 + 1e-9


class LongConvMixer:
    """Mixin for token mixers with a long convolution (see the module docstring)."""

    kernel_ndim: int = 2
    feature_size: tuple[int, int] = (1, 1)
    filter_attr: str = "long_conv"  # name of the submodule that owns the kernel

    def _long_filter(self):
        return getattr(self, self.filter_attr)

    def effective_kernel(self) -> torch.Tensor:
        """The kernel the mixer applies now.

        Returns:
            torch.Tensor: after the decay window and any truncation; detached float32 copy,
            ``(C, kh, kw)`` or ``(C, Lf)``.
        """
        with torch.no_grad():
            return self._long_filter().kernel().detach().float().clone()

    def window(self) -> torch.Tensor | None:
        """The decay window on the kernel grid.

        Returns:
            torch.Tensor | None: ``exp(-D |delta|) + shift`` (detached float32 copy), or None
            where the mixer has none (explicit kernels).
        """
        with torch.no_grad():
            w = self._long_filter().window()
            return None if w is None else w.detach().float().clone()

    @property
    def truncation(self) -> Truncation | None:
        """The truncation applied to the kernel now, or None."""
        return self._long_filter().truncation

    def set_truncation(self, rel_size: float | None, shape: str = "square") -> None:
        """Zero the kernel's taps outside a centred window for all following forwards.

        Args:
            rel_size: the window's side over the feature-map size (per axis; 1D kernels use
                the token count), positive; None removes the truncation.
            shape: ``square`` or ``disk``.

        Raises:
            ValueError: an unknown shape or a rel_size that is not positive.
        """
        self._long_filter().set_truncation(None if rel_size is None else Truncation(float(rel_size), shape))


def is_long_conv_mixer(module) -> bool:
    """Whether a module offers the long-convolution interface.

    Args:
        module: any object.

    Returns:
        bool: True for instances of :class:`LongConvMixer`.
    """
    return isinstance(module, LongConvMixer)
