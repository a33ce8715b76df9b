"""Fast subclasses of the reference modules, one per supported class (:data:`FAST_CLASSES`).

``fast_paths(model)`` swaps a module's class to its fast subclass: parameters, buffers,
state dict and hooks stay as they are. Each fast forward takes its fast path only when it
applies (fixed weights: eval mode and no parameter requiring grad, or grad mode off; the
dtypes and devices it was written for) and otherwise calls the plain forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..fft_conv import causal_fft_conv1d
from ..layers import DepthwiseConv1d, DepthwiseConv2d, Mlp, PointwiseConv2d, StarReLU, StemConv2d
from ..mixers import (
    BidirectionalHyena,
    BidirectionalHyenaNorm,
    CausalHyena,
    HyenaPixel,
    HyenaPixelExplicit,
    HyenaPixelNoNorm,
)
from . import strided_conv
from .fixed_weight import (
    fixed_depthwise_conv2d,
    fixed_linear,
    fixed_star_mlp,
    split_channels,
    star_relu,
    weights_fixed,
)
from .spectrum import cached_kernel, fixed_kernel_conv

__all__ = [
    "FastLinear",
    "FastPointwiseConv2d",
    "FastDepthwiseConv2d",
    "FastDepthwiseConv1d",
    "FastStemConv2d",
    "FastStarReLU",
    "FastMlp",
    "FastHyenaPixel",
    "FastHyenaPixelNoNorm",
    "FastHyenaPixelExplicit",
    "FastBidirectionalHyena",
    "FastBidirectionalHyenaNorm",
    "FastCausalHyena",
    "FAST_CLASSES",
]


# ----------------------------------------------------------------------------- layers
class FastLinear(nn.Linear):
    """``nn.Linear``; with fixed weights a product that keeps no input for the backward
    (oneDNN with the weight reordered once, for float32 CPU inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if weights_fixed(self):
            return fixed_linear(x, self.weight, self.bias)
        return super().forward(x)


class FastPointwiseConv2d(PointwiseConv2d):
    """H_px's 1x1 input conv; with fixed weights computed as :func:`.fixed_weight.fixed_linear`
    over the channels-last memory of its ``(B, C, H, W)`` input (a view of ``(B, H, W, C)``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if weights_fixed(self) and x.dim() == 4:
            y = fixed_linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias, owner=self.weight)
            return y.permute(0, 3, 1, 2)
        return super().forward(x)


def _depthwise_fixed(conv: nn.Module, x: torch.Tensor) -> bool:
    return weights_fixed(conv) and torch.is_grad_enabled() and x.dtype == conv.weight.dtype


class FastDepthwiseConv2d(DepthwiseConv2d):
    """With fixed weights the input gradient is the flipped-kernel convolution, nothing kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _depthwise_fixed(self, x):
            return fixed_depthwise_conv2d(x, self.weight, self.bias, self.padding)
        return super().forward(x)


class FastDepthwiseConv1d(DepthwiseConv1d):
    """As :class:`FastDepthwiseConv2d`, on the ``(B, C, 1, L)`` view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _depthwise_fixed(self, x):
            y = fixed_depthwise_conv2d(x.unsqueeze(2), self.weight.unsqueeze(2), self.bias, (0, self.padding[0]))
            return y.squeeze(2)
        return super().forward(x)


class FastStemConv2d(StemConv2d):
    """With fixed weights on the CPU, the input gradient (w.r.t. the image, what an ERF reads)
    runs as one stride-1 convolution of the phases plus a pixel shuffle
    (:mod:`.strided_conv`): oneDNN's backward-data kernel is slow with 3 output channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and torch.is_grad_enabled()
            and x.requires_grad
            and x.dtype == self.weight.dtype
            and strided_conv.supported(self)
            and weights_fixed(self)
        ):
            return strided_conv.fixed_strided_conv2d(x, self)
        return super().forward(x)


class FastStarReLU(StarReLU):
    """StarReLU whose backward keeps ``relu(x)`` only (exact, trainable too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return star_relu(x, self.scale, self.bias)


class FastMlp(Mlp):
    """With fixed weights, fc1 -> StarReLU -> fc2 fused, ``cpu_block_rows`` tokens at a time on
    the CPU, keeping only ``relu(fc1 x)`` for the input gradient (same result)."""

    cpu_block_rows = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            weights_fixed(self)
            and isinstance(self.act, StarReLU)
            and isinstance(self.fc1, nn.Linear)
            and isinstance(self.fc2, nn.Linear)
            and x.dtype == self.fc1.weight.dtype
        ):
            rows = self.cpu_block_rows if x.device.type == "cpu" else x.numel() // x.shape[-1]
            return fixed_star_mlp(x, self.fc1.weight, self.fc2.weight, self.act.scale, self.act.bias, max(rows, 1))
        return super().forward(x)


# ----------------------------------------------------------------------------- mixers
class _CachedSpectrumConvolution:
    """``long_convolution`` with the filter's kernel spectrum kept between calls and the
    mirrored-kernel backward (:mod:`.spectrum`), when the filter's weights are fixed."""

    def long_convolution(self, u: torch.Tensor) -> torch.Tensor:
        filt = self._long_filter()
        if not weights_fixed(filt):
            return super().long_convolution(u)
        _, spectrum = cached_kernel(filt, tuple(u.shape[2:]))
        return fixed_kernel_conv(u, spectrum, filt.bias)


class _LayoutPreservingSplit:
    """``split_qkv`` whose gradient is assembled in the input's memory layout (exact)."""

    def split_qkv(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return split_channels(u, self.dim)


class FastHyenaPixel(_CachedSpectrumConvolution, HyenaPixel):
    pass


class FastHyenaPixelNoNorm(_CachedSpectrumConvolution, HyenaPixelNoNorm):
    pass


class FastHyenaPixelExplicit(_CachedSpectrumConvolution, HyenaPixelExplicit):
    pass


class FastBidirectionalHyena(_LayoutPreservingSplit, _CachedSpectrumConvolution, BidirectionalHyena):
    pass


class FastBidirectionalHyenaNorm(_LayoutPreservingSplit, _CachedSpectrumConvolution, BidirectionalHyenaNorm):
    pass


class FastCausalHyena(_LayoutPreservingSplit, CausalHyena):
    """The causal ablation with its kernel kept between calls when its weights are fixed."""

    def long_convolution(self, v: torch.Tensor) -> torch.Tensor:
        if not weights_fixed(self.filter_fn):
            return super().long_convolution(v)
        kernel, _ = cached_kernel(self.filter_fn, (v.shape[-1],), with_spectrum=False)
        return causal_fft_conv1d(v, kernel, self.filter_fn.bias)


# plain class -> fast class; only modules of exactly these classes are swapped
FAST_CLASSES: dict[type, type] = {
    nn.Linear: FastLinear,
    PointwiseConv2d: FastPointwiseConv2d,
    DepthwiseConv2d: FastDepthwiseConv2d,
    DepthwiseConv1d: FastDepthwiseConv1d,
    StemConv2d: FastStemConv2d,
    StarReLU: FastStarReLU,
    Mlp: FastMlp,
    HyenaPixel: FastHyenaPixel,
    HyenaPixelNoNorm: FastHyenaPixelNoNorm,
    HyenaPixelExplicit: FastHyenaPixelExplicit,
    BidirectionalHyena: FastBidirectionalHyena,
    BidirectionalHyenaNorm: FastBidirectionalHyenaNorm,
    CausalHyena: FastCausalHyena,
}
