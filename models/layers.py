"""Small building blocks of the MetaFormer backbone (channels-last tensors, (B, H, W, C)).

These are the published computations written plainly. The speed machinery for frozen
models (fixed-weight gradients, oneDNN products with reordered weights) lives in
:mod:`.fast` and swaps in only inside ``fast_paths(model)``. A few classes here are
markers that let it find a module (:class:`StemConv2d`, :class:`PointwiseConv2d`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LayerNormNoBias",
    "StarReLU",
    "SquaredReLU",
    "Scale",
    "Sin",
    "Mlp",
    "MlpHead",
    "PointwiseConv2d",
    "DepthwiseConv2d",
    "DepthwiseConv1d",
    "StemConv2d",
    "Downsampling",
]


class LayerNormNoBias(nn.Module):
    """Layer norm over the last axis with a weight and no bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


class StarReLU(nn.Module):
    """``scale * relu(x)**2 + bias`` with learnable scalars."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), scale_value))
        self.bias = nn.Parameter(torch.full((1,), bias_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(x) ** 2 + self.bias


class SquaredReLU(nn.Module):
    """``relu(x)**2``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(F.relu(x))


class Scale(nn.Module):
    """Per-channel scaling (MetaFormer's res scale)."""

    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Sin(nn.Module):
    """``sin(freq * x)`` with a learnable frequency per channel; ``shape`` is the
    broadcast shape of ``freq`` (``(1, C)`` for token-major, ``(1, C, 1, 1)`` for maps)."""

    def __init__(self, shape: tuple[int, ...], init_value: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full(shape, init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class Mlp(nn.Module):
    """MetaFormer channel MLP: fc1 (C -> rC) -> StarReLU -> drop -> fc2 -> drop, no biases."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.act = StarReLU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        return self.drop2(self.fc2(x))


class MlpHead(nn.Module):
    """Classifier head: fc1 (C -> 4C) -> SquaredReLU -> LayerNorm -> dropout -> fc2."""

    def __init__(self, dim: int, num_classes: int = 1000, mlp_ratio: float = 4.0, head_dropout: float = 0.0):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = SquaredReLU()
        self.norm = nn.LayerNorm(hidden)
        self.head_dropout = nn.Dropout(head_dropout)
        self.fc2 = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_dropout(self.norm(self.act(self.fc1(x))))
        return x if pre_logits else self.fc2(x)


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(in_chs, out_chs, 1)``: H_px's input projection (a marker class, so that the
    fast paths can compute it as a linear layer over the channels-last memory)."""

    def __init__(self, in_chs: int, out_chs: int, bias: bool = True):
        super().__init__(in_chs, out_chs, 1, bias=bias)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)``: odd kernel,
    stride 1, output of the input's size."""

    def __init__(self, dim: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv2d needs an odd kernel size, got {kernel_size}")
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias)


class DepthwiseConv1d(nn.Conv1d):
    """``nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)`` (odd kernel,
    stride 1) on ``x (B, C, L)``.

    Computed as a ``1 x k`` 2D convolution of the ``(B, C, 1, L)`` view, a layout choice:
    for token sequences stored channels-last (``x`` the transpose of a ``(B, L, C)``
    tensor) oneDNN's 2D depthwise kernels work on the memory as it is, where ``conv1d``
    converted it and took 6x as long (first stage of hb_former_s18 at 1024 px). Parameters
    and state dict are those of the ``nn.Conv1d``."""

    def __init__(self, dim: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv1d needs an odd kernel size, got {kernel_size}")
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(
            x.unsqueeze(2), self.weight.unsqueeze(2), self.bias, padding=(0, self.padding[0]), groups=self.groups
        )
        return y.squeeze(2)


class StemConv2d(nn.Conv2d):
    """``nn.Conv2d`` of a network's stem (a marker class for the fast paths' input gradient)."""


class Downsampling(nn.Module):
    """Stem or between-stage down-sampling conv; input and output are channels-last
    (the stem takes the (B, 3, H, W) image).

    The published down-sampling norms write the layer norm out (mean, biased variance,
    square root); ``F.layer_norm`` computes the same normalisation and differs only in
    rounding. The conv runs on a channels-last input so that its output, permuted to
    (B, H, W, C), is contiguous: every norm, linear layer and residual sum of the stage
    that follows then works on contiguous tensors instead of copying.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        padding: int,
        pre_norm: bool = False,
        post_norm: bool = False,
    ):
        super().__init__()
        self.is_stem = not pre_norm
        self.pre_norm = LayerNormNoBias(in_chs, eps=1e-6) if pre_norm else nn.Identity()
        conv = StemConv2d if self.is_stem else nn.Conv2d
        self.conv = conv(in_chs, out_chs, kernel_size, stride=stride, padding=padding)
        self.post_norm = LayerNormNoBias(out_chs, eps=1e-6) if post_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        x = x.contiguous(memory_format=torch.channels_last) if self.is_stem else x.permute(0, 3, 1, 2)
        x = self.conv(x).permute(0, 2, 3, 1)
        return self.post_norm(x)
