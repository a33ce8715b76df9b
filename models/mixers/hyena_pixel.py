"""HyenaPixel (H_px) token mixers and their ablations.

``x (B, H, W, C)`` -> 1x1 conv (C -> 3C) -> depthwise 5x5 -> split q, k, v ->
``u = q * k`` (-> LayerNorm) -> global 2D convolution with the long filter plus a skip
``u * bias`` -> ``v * y`` -> output projection.

Variants are small subclasses: :class:`HyenaPixel` (layer norms after ``q * k`` and
before a linear output projection; S18/B36 models), :class:`HyenaPixelNoNorm` (no norms,
1x1 conv output projection; the H_px stages of the mixed models),
:class:`HyenaPixelExplicit` (explicit learned kernel) and :class:`HyenaPixelSeparable`
(a vertical then a horizontal 1D long convolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..fft_conv import fft_conv2d
from ..layers import DepthwiseConv2d, LayerNormNoBias, PointwiseConv2d
from .base import LongConvMixer
from .filters import ExplicitFilter2d, ImplicitWindowedFilter2d, LongFilter

__all__ = ["HyenaPixel", "HyenaPixelNoNorm", "HyenaPixelExplicit", "HyenaPixelSeparable"]


class _HyenaPixelBase(nn.Module, LongConvMixer):
    kernel_ndim = 2

    def __init__(self, dim: int, feature_size: tuple[int, int], short_kernel: int = 5):
        super().__init__()
        self.dim = dim
        self.feature_size = tuple(feature_size)
        self.pointwise_conv = PointwiseConv2d(dim, 3 * dim)
        self.depthwise_conv = DepthwiseConv2d(3 * dim, short_kernel)

    # hooks of the output side; overridden by the norm-free variant
    def _norm_qk(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def _output(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, H, W, C)
        return x.permute(0, 2, 3, 1)

    def long_convolution(self, u: torch.Tensor) -> torch.Tensor:
        """``y = conv(u, K) + u * bias``: the global convolution with the filter's kernel."""
        return fft_conv2d(u, self.long_conv.kernel(), self.long_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> a (B, C, H, W) view of channels-last memory; the convs keep that layout
        x = self.depthwise_conv(self.pointwise_conv(x.permute(0, 3, 1, 2)))
        q, k, v = x.split(self.dim, dim=1)
        u = self._norm_qk(q * k)
        return self._output(v * self.long_convolution(u))


class _LayerNormOutput:
    """qk LayerNorm and LayerNorm + Linear output (channels-last)."""

    def _build_output(self, dim: int) -> None:
        self.qk_norm = LayerNormNoBias(dim)
        self.out_norm = LayerNormNoBias(dim)
        self.out_proj = nn.Linear(dim, dim)

    def _norm_qk(self, u):
        return self.qk_norm(u.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def _output(self, x):
        return self.out_proj(self.out_norm(x.permute(0, 2, 3, 1)))


class _ConvOutput:
    """No norms; 1x1 conv output projection."""

    def _build_output(self, dim: int) -> None:
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def _output(self, x):
        return self.out_proj(x).permute(0, 2, 3, 1)


class _ImplicitHyenaPixel(_HyenaPixelBase):
    """H_px with the implicit windowed 2D filter as ``long_conv``."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        emb_dim: int,
        feature_size: tuple[int, int],
        filter_order: int | None = None,
        **kwargs,
    ):
        super().__init__(dim, feature_size)
        self.long_conv = ImplicitWindowedFilter2d(
            dim, kernel_size, emb_dim, filter_order or 2 * emb_dim, self.feature_size
        )
        self._build_output(dim)


class HyenaPixel(_LayerNormOutput, _ImplicitHyenaPixel):
    """H_px with layer norms after ``q * k`` and before a linear output (published S18/B36)."""


class HyenaPixelNoNorm(_ConvOutput, _ImplicitHyenaPixel):
    """H_px without layer norms, 1x1 conv output (H_px stages of c_hpx / hpx_a models)."""


class HyenaPixelExplicit(_ConvOutput, _HyenaPixelBase):
    """Ablation: H_px with an explicitly learned (non-implicit) kernel, no window."""

    def __init__(self, dim: int, kernel_size: int, feature_size: tuple[int, int], **kwargs):
        super().__init__(dim, feature_size)
        self.long_conv = ExplicitFilter2d(dim, kernel_size, self.feature_size)
        self._build_output(dim)


class HyenaPixelSeparable(_ConvOutput, _HyenaPixelBase):
    """Ablation: H_px with separable long convolutions (kernel_size x 1, then 1 x kernel_size),
    each a depthwise conv with bias. Its effective kernel is the outer product of the two."""

    def __init__(self, dim: int, kernel_size: int, feature_size: tuple[int, int], **kwargs):
        super().__init__(dim, feature_size)
        self.long_conv = _SeparableFilter2d(dim, kernel_size, self.feature_size)
        self._build_output(dim)

    def long_convolution(self, u: torch.Tensor) -> torch.Tensor:
        return self.long_conv(u)


class _SeparableFilter2d(LongFilter):
    """Two depthwise 1D long convolutions with biases: ``long_horizontal_conv`` (K x 1)
    first, then ``long_vertical_conv`` (1 x K), named as in the published ablation."""

    def __init__(self, dim: int, kernel_size: int, feature_size: tuple[int, int]):
        super().__init__(feature_size)
        k = kernel_size
        self.long_horizontal_conv = nn.Conv2d(dim, dim, (k, 1), padding=(k // 2, 0), groups=dim)
        self.long_vertical_conv = nn.Conv2d(dim, dim, (1, k), padding=(0, k // 2), groups=dim)

    @property
    def kernel_shape(self) -> tuple[int, int]:
        return self.long_horizontal_conv.kernel_size[0], self.long_vertical_conv.kernel_size[1]

    def set_truncation(self, trunc) -> None:
        if trunc is not None and trunc.shape != "square":
            raise ValueError("separable long convolutions can only be truncated with a square window")
        super().set_truncation(trunc)

    def untruncated_kernel(self) -> torch.Tensor:
        # conv2d is a cross-correlation: the convolution kernel is the flipped weight
        k_rows = self.long_horizontal_conv.weight[:, 0, :, 0].flip(-1)
        k_cols = self.long_vertical_conv.weight[:, 0, 0, :].flip(-1)
        return k_rows[:, :, None] * k_cols[:, None, :]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        w_rows, w_cols = self.long_horizontal_conv.weight, self.long_vertical_conv.weight
        mask = self.truncation_mask()  # square and centred: separable, symmetric
        if mask is not None:
            w_rows = w_rows * mask.any(1).to(w_rows)[None, None, :, None]
            w_cols = w_cols * mask.any(0).to(w_cols)[None, None, None, :]
        groups = u.shape[1]
        u = F.conv2d(
            u, w_rows, self.long_horizontal_conv.bias, padding=self.long_horizontal_conv.padding, groups=groups
        )
        return F.conv2d(u, w_cols, self.long_vertical_conv.bias, padding=self.long_vertical_conv.padding, groups=groups)
