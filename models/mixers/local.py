"""Token mixers without long convolutions: ConvFormer's SepConv and self-attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DepthwiseConv2d, StarReLU

__all__ = ["SepConv", "Attention"]


class SepConv(nn.Module):
    """Inverted separable conv (MobileNetV2 / ConvFormer): Linear (C -> 2C) -> StarReLU ->
    depthwise 7x7 -> Linear (2C -> C), no biases."""

    def __init__(self, dim: int, expansion_ratio: float = 2.0, kernel_size: int = 7, **kwargs):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.kernel_size = kernel_size
        self.pwconv1 = nn.Linear(dim, med, bias=False)
        self.act1 = StarReLU()
        self.dwconv = DepthwiseConv2d(med, kernel_size, bias=False)
        self.pwconv2 = nn.Linear(med, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.pwconv1(x))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pwconv2(x)


class Attention(nn.Module):
    """Multi-head self-attention over all H*W tokens (head_dim 32, no biases)."""

    def __init__(self, dim: int, head_dim: int = 32, **kwargs):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(dim // head_dim, 1)
        self.attention_dim = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * self.attention_dim, bias=False)
        self.proj = nn.Linear(self.attention_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        return self.proj(y.transpose(1, 2).reshape(B, H, W, self.attention_dim))
