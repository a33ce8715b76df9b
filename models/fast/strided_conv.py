"""Strided convolutions whose input gradient, with fixed weights, is one stride-1 convolution.

The input gradient of a convolution with stride ``s`` is a transposed convolution. For
hpx_former_s18's stem (3 -> 64 channels, 7 x 7, stride 4) oneDNN's backward-data kernel
runs it at about 40 GFLOP/s, 31-40 ms per 1024 px image on this project's 2-core CPU: it
has only 3 output channels to vectorise over. Sorted by the position of an input pixel in
its ``s x s`` cell (its phase), the transposed convolution becomes ``s * s`` ordinary
stride-1 convolutions of the output gradient, each with the kernel taps that reach that
phase. Stacked as the ``s * s * C_in`` output channels of one convolution and put back in
place by ``pixel_shuffle``, they run at oneDNN's forward speed: 20 against 40 ms for the
stem (paired timings in one process), although the stacked kernel holds zeros where a
phase has fewer taps (for the stem a 3 x 3 kernel per phase, 2.9x the multiply-adds).
Strided convolutions with many input channels (the 3 x 3 down-sampling layers) already
reach oneDNN's full speed and would only pay for the zeros, so only the stem uses this
(:class:`.modules.FastStemConv2d`), and only on the CPU, where it was measured.

For input pixel ``i = s q + a`` and output position ``o``, tap ``t = a + p - s (o - q)``
links them (``p`` the padding); with ``e = o - q`` the phase-``a`` gradient is the
cross-correlation ``sum_e K_a[e] g[q + e]`` with ``K_a[e] = W[a + p - s e]`` where that
tap exists. Square kernels, strides and paddings only (what the MetaFormer stems use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .weight_cache import derived

__all__ = ["PhaseKernel", "phase_kernel", "input_gradient", "supported", "fixed_strided_conv2d"]


@dataclass(frozen=True)
class PhaseKernel:
    """The stacked phase kernel ``(s * s * C_in, C_out, L, L)`` of a strided convolution's
    weight, for offsets ``e`` from ``e_min`` to ``e_min + L - 1``."""

    kernel: torch.Tensor
    e_min: int
    stride: int

    @property
    def e_max(self) -> int:
        return self.e_min + self.kernel.shape[-1] - 1


def phase_kernel(weight: torch.Tensor, stride: int, padding: int) -> PhaseKernel:
    """The :class:`PhaseKernel` of a ``(C_out, C_in, k, k)`` convolution weight."""
    c_out, c_in, k, kw = weight.shape
    if k != kw:
        raise ValueError(f"square kernels only, got {k} x {kw}")
    s, p = stride, padding
    lows = [math.ceil((a + p - k + 1) / s) for a in range(s)]
    highs = [(a + p) // s for a in range(s)]
    e_min, e_max = min(lows), max(highs)
    size = e_max - e_min + 1
    stacked = weight.new_zeros(c_in, s, s, c_out, size, size)
    w = weight.transpose(0, 1)  # (C_in, C_out, k, k)
    for a in range(s):
        for e in range(lows[a], highs[a] + 1):
            for b in range(s):
                for f in range(lows[b], highs[b] + 1):
                    stacked[:, a, b, :, e - e_min, f - e_min] = w[:, :, a + p - s * e, b + p - s * f]
    return PhaseKernel(stacked.reshape(c_in * s * s, c_out, size, size), e_min, s)


def input_gradient(grad: torch.Tensor, phases: PhaseKernel, input_size: tuple[int, int]) -> torch.Tensor:
    """The input gradient ``(B, C_in, H, W)`` of the strided convolution whose output
    gradient is ``grad (B, C_out, h, w)``."""
    s = phases.stride
    (h, w), (H, W) = grad.shape[-2:], input_size
    rows, cols = -(-H // s), -(-W // s)  # phase cells covering the input
    # pad (or crop) the output gradient so that offsets e_min..e_max stay inside it
    pad = (-phases.e_min, cols - w + phases.e_max, -phases.e_min, rows - h + phases.e_max)
    kernel = phases.kernel.to(grad.dtype)
    if len(set(pad)) == 1 and pad[0] >= 0:
        cells = F.conv2d(grad, kernel, padding=pad[0])
    else:
        cells = F.conv2d(F.pad(grad, pad), kernel)
    return F.pixel_shuffle(cells, s)[..., :H, :W]


class _FixedStridedConv2d(torch.autograd.Function):
    """``F.conv2d`` with a constant weight; the input gradient through :func:`input_gradient`.
    Nothing but the (cached) phase kernel is kept for the backward."""

    @staticmethod
    def forward(ctx, x, conv: nn.Conv2d):
        ctx.input_size = tuple(x.shape[-2:])
        s, p = conv.stride[0], conv.padding[0]
        ctx.phases = derived(conv.weight, f"phase_kernel:{s}:{p}", lambda: phase_kernel(conv.weight, s, p))
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)

    @staticmethod
    def backward(ctx, grad):
        return input_gradient(grad, ctx.phases, ctx.input_size), None


def supported(conv: nn.Conv2d) -> bool:
    """Whether ``conv``'s geometry is one :func:`fixed_strided_conv2d` handles: square kernel,
    stride (> 1) and padding, no dilation or groups."""
    return (
        conv.groups == 1
        and conv.dilation == (1, 1)
        and isinstance(conv.padding, tuple)
        and len(set(conv.padding)) == 1
        and len(set(conv.stride)) == 1
        and len(set(conv.kernel_size)) == 1
        and conv.stride[0] > 1
    )


def fixed_strided_conv2d(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a convolution with constant weights (see :func:`supported`), with the
    input gradient of :func:`input_gradient`."""
    return _FixedStridedConv2d.apply(x, conv)
