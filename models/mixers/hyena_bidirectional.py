"""Hyena token mixers on the raster-flattened token sequence: bidirectional (H_b) and,
for the ablation, causal.

``x (B, H, W, C)`` -> tokens ``(B, L = H*W, C)`` -> Linear (C -> 3C) -> depthwise conv1d k3
-> split x0, x1, v -> ``v = v * x1`` (-> LayerNorm) -> long 1D convolution plus skip
``v * bias`` -> ``y * x0`` (-> LayerNorm) -> Linear -> (B, H, W, C).

The kernel has a fixed length ``Lf`` (``2 * L_train - 1`` for H_b). At any input size,
this project computes the exact centred linear convolution with all ``Lf`` taps (taps
beyond the sequence simply meet zeros). The published code uses an FFT of size ``2L``,
which equals this for ``L >= L_train - 1`` but fails for inputs smaller than the
training size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..fft_conv import causal_fft_conv1d, fft_conv1d
from ..layers import DepthwiseConv1d, LayerNormNoBias
from .base import LongConvMixer
from .filters import ImplicitFilter1d

__all__ = ["BidirectionalHyena", "BidirectionalHyenaNorm", "CausalHyena"]


class BidirectionalHyena(nn.Module, LongConvMixer):
    """H_b without layer norms (published S18 models)."""

    kernel_ndim = 1
    filter_attr = "filter_fn"
    bidirectional = True

    def __init__(self, dim: int, feature_size: tuple[int, int], emb_dim: int, filter_order: int = 64, **kwargs):
        super().__init__()
        self.dim = dim
        self.feature_size = tuple(feature_size)
        seq_len = self.feature_size[0] * self.feature_size[1]
        kernel_len = 2 * seq_len - 1 if self.bidirectional else seq_len
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.short_filter = (
            DepthwiseConv1d(3 * dim, 3)
            if self.bidirectional
            else nn.Conv1d(3 * dim, 3 * dim, 3, padding=2, groups=3 * dim)
        )
        self.filter_fn = ImplicitFilter1d(
            dim, kernel_len, emb_dim, filter_order, self.feature_size, bidirectional=self.bidirectional
        )
        self._build_norms(dim)
        self.out_proj = nn.Linear(dim, dim)

    def _build_norms(self, dim: int) -> None:
        pass

    def _norm_qk(self, v: torch.Tensor) -> torch.Tensor:
        return v

    def _norm_out(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _short_filter(self, u: torch.Tensor) -> torch.Tensor:
        return self.short_filter(u)

    def split_qkv(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x0, x1, v``: the three channel groups of ``u (B, 3C, L)``."""
        return u.split(self.dim, dim=1)

    def long_convolution(self, v: torch.Tensor) -> torch.Tensor:
        """``y = conv(v, k) + v * bias``: the centred long convolution with all ``Lf`` taps."""
        return fft_conv1d(v, self.filter_fn.kernel(), self.filter_fn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        u = self.in_proj(x.reshape(B, H * W, C)).transpose(1, 2)
        x0, x1, v = self.split_qkv(self._short_filter(u))
        v = self._norm_qk(v * x1)
        y = (self.long_convolution(v) * x0).transpose(1, 2)
        return self.out_proj(self._norm_out(y)).reshape(B, H, W, C)


class BidirectionalHyenaNorm(BidirectionalHyena):
    """H_b with layer norms after ``v * x1`` and before the output projection (B36)."""

    def _build_norms(self, dim: int) -> None:
        self.qk_norm = nn.ModuleList([LayerNormNoBias(dim)])
        self.out_norm = LayerNormNoBias(dim)

    def _norm_qk(self, v):
        return self.qk_norm[0](v.transpose(1, 2)).transpose(1, 2)

    def _norm_out(self, y):
        return self.out_norm(y)


class CausalHyena(BidirectionalHyena):
    """Ablation: the original causal Hyena on the raster sequence (kernel of L_train taps,
    token i sees tokens j <= i only)."""

    bidirectional = False

    def _short_filter(self, u):
        return F.conv1d(u, self.short_filter.weight, self.short_filter.bias, padding=2, groups=u.shape[1])[
            ..., : u.shape[-1]
        ]

    def long_convolution(self, v):
        return causal_fft_conv1d(v, self.filter_fn.kernel(), self.filter_fn.bias)
