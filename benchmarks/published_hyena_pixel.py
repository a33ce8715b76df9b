"""A HyenaPixel token mixer computed the way the published implementation does it, for
benchmarking only.

:class:`PublishedLongConvMixer` wraps one of this package's H_px mixers and reuses its
submodules and weights (projections, short depthwise conv, norms, the implicit filter),
but computes the global convolution as the published code does:

- the kernel is recomputed from the implicit filter on every forward (no cache);
- the FFT is padded to ``(max(2h, kh), max(2w, kw))`` for an ``h x w`` feature map and a
  ``kh x kw`` kernel, and the output is the slice ``[kh//2 : h + kh//2, kw//2 : w + kw//2]``.

:class:`PublishedStarReLU` computes StarReLU as the published MetaFormer code does
(``scale * relu(x) ** 2 + bias`` through autograd's ``pow``), sharing the weights.

:func:`published_copy` returns a deep copy of a model with every H_px mixer and every
StarReLU replaced by these wrappers (module replacement; the library code is not touched).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from hpx_analysis.models import iter_token_mixers
from hpx_analysis.models.layers import StarReLU
from hpx_analysis.models.mixers.hyena_pixel import HyenaPixel, HyenaPixelNoNorm

__all__ = ["PublishedLongConvMixer", "PublishedStarReLU", "published_long_conv", "published_copy"]


def published_long_conv(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``u (B, C, h, w)`` convolved with ``k (C, kh, kw)`` by a 2h x 2w FFT, plus ``u * bias``."""
    h, w = u.shape[-2:]
    kh, kw = k.shape[-2:]
    size = (max(2 * h, kh), max(2 * w, kw))
    u32 = u.float()
    k_f = torch.fft.rfft2(k.float(), s=size)
    u_f = torch.fft.rfft2(u32, s=size)
    y = torch.fft.irfft2(u_f * k_f, s=size)[..., kh // 2: h + kh // 2, kw // 2: w + kw // 2]
    return (y + u32 * bias.float().reshape(1, -1, 1, 1)).to(u.dtype)


class PublishedLongConvMixer(nn.Module):
    """The wrapped mixer's forward with the published long convolution."""

    def __init__(self, mixer: nn.Module):
        super().__init__()
        if not isinstance(mixer, (HyenaPixel, HyenaPixelNoNorm)):
            raise TypeError(f"only H_px mixers with an implicit filter can be wrapped, got {type(mixer).__name__}")
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mixer
        x = m.depthwise_conv(m.pointwise_conv(x.permute(0, 3, 1, 2)))
        q, k, v = x.split(m.dim, dim=1)
        u = m._norm_qk(q * k)
        kernel = m.long_conv.kernel()  # recomputed from the implicit filter every time
        return m._output(v * published_long_conv(u, kernel, m.long_conv.bias))


class PublishedStarReLU(nn.Module):
    """The wrapped StarReLU's weights, computed as the published code does."""

    def __init__(self, act: StarReLU):
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act.scale * torch.relu(x) ** 2 + self.act.bias


def _replace_star_relus(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, StarReLU):
                setattr(parent, name, PublishedStarReLU(child))


def published_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose H_px mixers and StarReLUs compute the published way."""
    clone = copy.deepcopy(model)
    _replace_star_relus(clone)
    replaced = 0
    for _, _, mixer in list(iter_token_mixers(clone)):
        if isinstance(mixer, (HyenaPixel, HyenaPixelNoNorm)):
            for parent in clone.modules():
                if getattr(parent, "token_mixer", None) is mixer:
                    parent.token_mixer = PublishedLongConvMixer(mixer)
                    replaced += 1
    if replaced == 0:
        raise ValueError("the model has no H_px token mixers to replace")
    return clone
