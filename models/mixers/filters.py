"""Long-convolution filters: the modules that own a kernel and its truncation.

A filter computes its kernel from parameters (implicitly, through a small network, or
explicitly) on every call, then applies the current truncation. Frozen models can keep
the kernel and its FFT spectrum between calls inside ``fast_paths(model)``
(:mod:`..fast.spectrum`).
"""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

from ..layers import Sin
from .base import Truncation, centred_mask

__all__ = [
    "LongFilter",
    "ImplicitWindowedFilter2d",
    "ExplicitFilter2d",
    "ImplicitFilter1d",
    "sincos_embedding_2d",
    "distance_map",
    "complex_exp_embedding_1d",
]


def sincos_embedding_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """2D sin/cos position encoding (dim, height, width): the first half of the channels
    encodes the column (x), the second half the row (y); even channels sin, odd cos."""
    if dim % 4:
        raise ValueError(f"2D sin/cos encoding needs a channel count divisible by 4, got {dim}")
    half = dim // 2
    freq = torch.exp(torch.arange(0.0, half, 2) * -(math.log(10000.0) / half))
    x = torch.arange(float(width))[:, None] * freq  # (W, half/2)
    y = torch.arange(float(height))[:, None] * freq
    pe = torch.zeros(dim, height, width)
    pe[0:half:2] = torch.sin(x).T[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = torch.cos(x).T[:, None, :].expand(-1, height, -1)
    pe[half::2] = torch.sin(y).T[:, :, None].expand(-1, -1, width)
    pe[half + 1 :: 2] = torch.cos(y).T[:, :, None].expand(-1, -1, width)
    return pe


def distance_map(height: int, width: int) -> torch.Tensor:
    """Distance of tap centres (i + 0.5, j + 0.5) to the kernel centre (h / 2, w / 2)."""
    i = torch.arange(height, dtype=torch.float64)[:, None] + 0.5 - height / 2
    j = torch.arange(width, dtype=torch.float64)[None, :] + 0.5 - width / 2
    return torch.sqrt(i**2 + j**2).float()


def complex_exp_embedding_1d(emb_dim: int, seq_len: int, bidirectional: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hyena's position embedding ``z`` (1, L, emb_dim) = [t, Re exp(-i f w), Im ...] and the
    decay time ``t`` (1, L, 1): 0 at the first tap (causal) or at the centre tap
    (bidirectional), rising to 1 at the end(s)."""
    if emb_dim < 3 or emb_dim % 2 == 0:
        raise ValueError(f"emb_dim must be odd and >= 3, got {emb_dim}")
    if bidirectional:
        ramp = torch.linspace(0, 1, seq_len // 2 + 1)
        t = torch.cat([ramp[:-1], ramp.flip(0)])[None, :, None]
    else:
        t = torch.linspace(0, 1, seq_len)[None, :, None]
    bands = (emb_dim - 1) // 2
    w = 2 * math.pi * torch.linspace(0, seq_len - 1, seq_len)[None, :, None] / seq_len
    f = torch.linspace(1e-4, bands - 1, bands)[None, None]
    z = torch.exp(-1j * f * w)
    return torch.cat([t, z.real, z.imag], dim=-1), 1 - t


class LongFilter(nn.Module, abc.ABC):
    """Base class: a kernel ``(C, *K)`` from :meth:`untruncated_kernel` and a truncation."""

    kernel_ndim = 2

    def __init__(self, feature_size: tuple[int, ...]):
        super().__init__()
        self.feature_size = tuple(int(n) for n in feature_size)
        self.truncation: Truncation | None = None

    @abc.abstractmethod
    def untruncated_kernel(self) -> torch.Tensor:
        """The kernel (C, *K) before truncation."""

    @property
    @abc.abstractmethod
    def kernel_shape(self) -> tuple[int, ...]:
        """The kernel's spatial shape."""

    def window(self) -> torch.Tensor | None:
        return None

    def set_truncation(self, trunc: Truncation | None) -> None:
        self.truncation = trunc

    def truncation_mask(self) -> torch.Tensor | None:
        """Boolean mask of the taps the truncation keeps, or None without truncation."""
        if self.truncation is None:
            return None
        extent = self.feature_size if self.kernel_ndim == 2 else (math.prod(self.feature_size),)
        return centred_mask(self.kernel_shape, extent, self.truncation)

    def truncate(self, k: torch.Tensor) -> torch.Tensor:
        """``k`` with the taps outside the current truncation set to zero."""
        mask = self.truncation_mask()
        return k if mask is None else k * mask.to(device=k.device, dtype=k.dtype)

    def kernel(self) -> torch.Tensor:
        """The kernel after the window and the current truncation, (C, *K)."""
        return self.truncate(self.untruncated_kernel())


class ImplicitWindowedFilter2d(LongFilter):
    """HyenaPixel's global 2D filter: ``K = F(z) * (exp(-D |deltas|) + shift)``.

    ``z`` (1, E, kh, kw) is a learned position embedding, ``D`` the tap distance map
    (a stored constant), ``F`` a 1x1-conv network with sine activations.
    Parameter names follow the published checkpoints (``long_conv.*``).
    """

    def __init__(self, dim: int, kernel_size: int, emb_dim: int, filter_order: int, feature_size: tuple[int, int]):
        super().__init__(feature_size)
        self.z = nn.Parameter(sincos_embedding_2d(emb_dim, kernel_size, kernel_size)[None])
        self.register_buffer("distance_map", distance_map(kernel_size, kernel_size)[None, None])
        target, fast, slow = 1e-2, 0.3, 1.5
        deltas = torch.linspace(math.log(target) / slow, math.log(target) / fast, dim)
        self.deltas = nn.Parameter(deltas[None, :, None, None] / kernel_size)
        self.shift = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, dim, 1, 1))
        self.implicit_filter = nn.Sequential(
            nn.Conv2d(emb_dim, filter_order, 1),
            Sin((1, filter_order, 1, 1)),
            nn.Conv2d(filter_order, filter_order, 1),
            Sin((1, filter_order, 1, 1)),
            nn.Conv2d(filter_order, dim, 1, bias=False),
        )

    @property
    def kernel_shape(self) -> tuple[int, int]:
        return tuple(self.z.shape[-2:])

    def window(self) -> torch.Tensor:
        return (torch.exp(-self.distance_map * self.deltas.abs()) + self.shift)[0]

    def untruncated_kernel(self) -> torch.Tensor:
        return self.implicit_filter(self.z)[0] * self.window()


class ExplicitFilter2d(LongFilter):
    """Ablation: a directly learned per-channel 2D kernel (no implicit network, no window)."""

    def __init__(self, dim: int, kernel_size: int, feature_size: tuple[int, int]):
        super().__init__(feature_size)
        self.weight = nn.Parameter(torch.randn(dim, kernel_size, kernel_size) / kernel_size)
        self.bias = nn.Parameter(torch.zeros(1, dim, 1, 1))

    @property
    def kernel_shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape[-2:])

    def untruncated_kernel(self) -> torch.Tensor:
        return self.weight


class ImplicitFilter1d(LongFilter):
    """Hyena's implicit 1D filter ``k = G(z) * exp(-t |deltas|)`` with ``Lf`` taps.

    ``t`` and ``deltas`` are constants (buffers, as in the published models); names follow
    the published checkpoints (``filter_fn.*``)."""

    kernel_ndim = 1

    def __init__(
        self,
        dim: int,
        kernel_len: int,
        emb_dim: int,
        filter_order: int,
        feature_size: tuple[int, int],
        bidirectional: bool = True,
        num_inner: int = 2,
    ):
        super().__init__(feature_size)
        self.bidirectional = bidirectional
        self.bias = nn.Parameter(torch.randn(dim))
        self.pos_emb = _PositionEmbedding1d(emb_dim, kernel_len, bidirectional)
        layers = [nn.Linear(emb_dim, filter_order), Sin((1, filter_order))]
        for _ in range(num_inner):
            layers += [nn.Linear(filter_order, filter_order), Sin((1, filter_order))]
        layers.append(nn.Linear(filter_order, dim, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = _ExponentialDecay(dim)

    @property
    def kernel_shape(self) -> tuple[int]:
        return (self.pos_emb.z.shape[1],)

    def window(self) -> torch.Tensor:
        return self.modulation.decay(self.pos_emb.t)[0].T  # (C, Lf)

    def truncation_mask(self) -> torch.Tensor | None:
        if self.bidirectional or self.truncation is None:
            return super().truncation_mask()
        # causal kernels start at the current token: keep the first rel_size * L taps
        n_keep = self.truncation.rel_size * math.prod(self.feature_size)
        return torch.arange(self.kernel_shape[0]) < n_keep

    def untruncated_kernel(self) -> torch.Tensor:
        h = self.implicit_filter(self.pos_emb.z)[0]  # (Lf, C)
        return (h * self.modulation.decay(self.pos_emb.t)[0]).T.contiguous()


class _PositionEmbedding1d(nn.Module):
    def __init__(self, emb_dim: int, seq_len: int, bidirectional: bool):
        super().__init__()
        z, t = complex_exp_embedding_1d(emb_dim, seq_len, bidirectional)
        self.z = nn.Parameter(z)
        self.register_buffer("t", t)


class _ExponentialDecay(nn.Module):
    def __init__(self, dim: int, fast: float = 0.3, slow: float = 1.5, target: float = 1e-2):
        super().__init__()
        deltas = torch.linspace(math.log(target) / slow, math.log(target) / fast, dim)
        self.register_buffer("deltas", deltas[None, None])

    def decay(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-t * self.deltas.abs())
