"""Exact linear (zero-padded, non-circular) long convolutions computed with the FFT.

Conventions follow the published HyenaPixel models: the kernel is centred on the output
position, ``y[i] = sum_p u[p] * k[i - p + K//2]`` (a true, flipped convolution), and the
output has the size of the input.

FFT size. A circular convolution of length ``N`` equals the linear one at the output
indices ``[K//2, K//2 + n)`` as soon as ``N >= n + K//2`` (aliased terms land outside
that window), where ``n`` is the input length and ``K`` the (odd) kernel length.
Kernel taps further than ``n - 1`` from the centre can never meet the input, so the
kernel is first cropped to at most ``2n - 1`` taps. The FFT length is the smallest even
7-smooth integer that satisfies both (MKL's real FFTs of odd length are about 2.5x slower
per point on this project's CPU, see :func:`fast_even_len`). It is usually
much smaller than the blanket ``2n`` of the published code (e.g. 320 instead of 512 for a
256 px feature map and a 111 tap kernel).

Fixed kernels. When the kernel needs no gradient (an eval-mode model with frozen
parameters, as in every analysis here), :class:`KernelSpectrum` holds the spectra of the
kernel and of its mirror image, and :func:`fft_conv2d` / :func:`fft_conv1d` run a custom
autograd function: the input gradient of a centred convolution is the centred
convolution of the output gradient with the mirrored kernel, so the backward pass costs
one real FFT and one inverse real FFT, like the forward, and stores no activations.
On the CPU the 2D inverse runs as one MKL call (see :mod:`.mkl_irfft2`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .mkl_irfft2 import irfft2

__all__ = [
    "next_fast_len",
    "fast_even_len",
    "KernelSpectrum",
    "kernel_spectrum",
    "crop_kernel",
    "fft_size",
    "plane_stride",
    "fft_conv1d",
    "fft_conv2d",
    "causal_fft_conv1d",
    "direct_conv1d",
    "direct_conv2d",
]


@functools.lru_cache(maxsize=None)
def next_fast_len(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3, 5 or 7 (fast for cuFFT/pocketfft)."""
    if n <= 1:
        return 1
    best = None
    p7 = 1
    while p7 < 2 * n:
        p5 = p7
        while p5 < 2 * n:
            p3 = p5
            while p3 < 2 * n:
                m = p3
                while m < n:
                    m *= 2
                if best is None or m < best:
                    best = m
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best


@functools.lru_cache(maxsize=None)
def fast_even_len(n: int) -> int:
    """Smallest even 7-smooth integer >= n: the FFT lengths used here. A real FFT of even
    length runs as a complex FFT of half the length; odd lengths lose that (measured on
    this project's CPU: 2.5x slower per point at 315 than at 320)."""
    m = next_fast_len(max(n, 2))
    while m % 2:
        m = next_fast_len(m + 1)
    return m


def crop_kernel(k: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Crop the trailing dims of a centred, odd-sized kernel to the taps that can reach an
    input of the given sizes (at most ``2n - 1`` taps per axis)."""
    slices = [slice(None)] * (k.ndim - len(sizes))
    for n, K in zip(sizes, k.shape[-len(sizes):]):
        keep = min(K, 2 * n - 1)
        start = K // 2 - keep // 2
        slices.append(slice(start, start + keep))
    return k[tuple(slices)]


def fft_size(n: int, kernel_len: int) -> int:
    """FFT length for an exact centred convolution of n samples with a kernel of
    ``kernel_len`` taps (already cropped, see :func:`crop_kernel`)."""
    return fast_even_len(max(n + kernel_len // 2, kernel_len))


def _check_odd(k: torch.Tensor, ndim: int) -> None:
    for K in k.shape[-ndim:]:
        if K % 2 != 1:
            raise ValueError(f"centred long convolutions need odd kernel sizes, got {tuple(k.shape[-ndim:])}")


@dataclass(frozen=True)
class KernelSpectrum:
    """A fixed centred kernel laid out for inputs of ``input_size``: the real FFTs of the
    cropped kernel and of its mirror image (flipped on every spatial axis), both of size
    ``fft_shape``. ``kernel_shape`` is the cropped kernel's spatial shape."""

    spectrum: torch.Tensor
    mirrored: torch.Tensor
    input_size: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    fft_shape: tuple[int, ...]


def kernel_spectrum(k: torch.Tensor, input_size: tuple[int, ...]) -> KernelSpectrum:
    """The :class:`KernelSpectrum` of a ``(C, *K)`` kernel for inputs of ``input_size``
    (one size per spatial axis; 1 or 2 axes)."""
    nd = len(input_size)
    _check_odd(k, nd)
    kc = crop_kernel(k.detach().float(), tuple(input_size))
    kernel_shape = tuple(kc.shape[-nd:])
    fft_shape = tuple(fft_size(n, K) for n, K in zip(input_size, kernel_shape))
    dims = tuple(range(-nd, 0))
    return KernelSpectrum(
        spectrum=torch.fft.rfftn(kc, s=fft_shape, dim=dims),
        mirrored=torch.fft.rfftn(kc.flip(dims), s=fft_shape, dim=dims),
        input_size=tuple(input_size),
        kernel_shape=kernel_shape,
        fft_shape=fft_shape,
    )


def plane_stride(plane: int) -> int:
    """Floats between the starts of consecutive planes of ``plane`` floats in the inverse
    FFT's output: the smallest ``m >= plane`` with ``m % 32 == 16``. Then ``4 m`` bytes is
    an odd multiple of 64, so the same pixel of 64 consecutive channels falls into 64
    different sets of a 4 KiB-per-way L1 cache. Planes of a multiple of 4 KiB (320 x 320,
    160 x 160 floats) put them all into one set: the transposing add that reads every
    channel of a pixel back into the channels-last layout took 7 ms instead of 2.5 ms for
    the 64 channels of 320 x 320 here."""
    return plane + (16 - plane) % 32


# a transposing copy of a large map runs in slabs of rows of about this many bytes
_COPY_SLAB_BYTES = 512 << 10


def _copy_into(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)``. A large channels-last ``src (B, C, h, w)`` going into a
    channel-planar ``dst`` is copied a slab of rows at a time: one copy writes to every
    channel plane at once, which the CPU handles badly for large maps (a first-stage map of
    hpx_former_s18 at 1024 px, 64 x 256 x 256: 3 ms in slabs of 8 rows, 6-10 ms at once)."""
    transposing = src.ndim == 4 and src.stride(1) == 1 and dst.stride(-1) == 1 and src.shape[1] > 1
    if not transposing or src.device.type != "cpu" or src.numel() * src.element_size() <= 4 * _COPY_SLAB_BYTES:
        dst.copy_(src)
        return
    row_bytes = src.numel() // src.shape[2] * src.element_size()  # one row of every image and channel
    rows = max(1, _COPY_SLAB_BYTES // row_bytes)
    for start in range(0, src.shape[2], rows):
        dst[:, :, start:start + rows].copy_(src[:, :, start:start + rows])


def _apply_spectrum(u: torch.Tensor, spectrum: torch.Tensor, kernel_shape, fft_shape) -> torch.Tensor:
    """The centred convolution of float32 ``u (..., *n)`` with the kernel whose spectrum is
    given: zero-pad into one buffer (any input layout), real FFT, product, inverse, crop."""
    nd = len(fft_shape)
    sizes = u.shape[-nd:]
    dims = tuple(range(-nd, 0))
    padded = u.new_empty(*u.shape[:-nd], *fft_shape)
    for axis, n in enumerate(sizes):  # zero only the padding
        lead = tuple(slice(0, m) for m in sizes[:axis])
        padded[(...,) + lead + (slice(n, None),) + (slice(None),) * (nd - axis - 1)] = 0
    _copy_into(padded[(...,) + tuple(slice(0, n) for n in sizes)], u)
    product = torch.fft.rfftn(padded, dim=dims).mul_(spectrum)
    if nd == 2:
        y = irfft2(product, fft_shape, plane_stride=plane_stride(fft_shape[0] * fft_shape[1]))
    else:
        y = torch.fft.irfftn(product, s=fft_shape, dim=dims)
    return y[(...,) + tuple(slice(K // 2, K // 2 + n) for K, n in zip(kernel_shape, sizes))]


def _plus_skip(y: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, out_dtype) -> torch.Tensor:
    """``y + u * bias`` in ``u``'s memory layout and ``out_dtype``."""
    out = torch.empty_like(u, dtype=out_dtype)
    if bias is None:
        return out.copy_(y)
    b = bias.detach().float().reshape(1, -1, *([1] * (u.ndim - 2)))
    if out_dtype == torch.float32:
        return torch.addcmul(y, u, b, out=out)
    return out.copy_(torch.addcmul(y, u, b))


class _FixedKernelConv(torch.autograd.Function):
    """Centred convolution with a fixed kernel (plus ``u * bias``); gradient w.r.t. ``u`` only."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, ks: KernelSpectrum, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.ks, ctx.bias, ctx.in_dtype = ks, bias, u.dtype
        u32 = u.float()
        return _plus_skip(_apply_spectrum(u32, ks.spectrum, ks.kernel_shape, ks.fft_shape), u32, bias, u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        ks = ctx.ks
        g32 = grad.float()
        grad_u = _plus_skip(_apply_spectrum(g32, ks.mirrored, ks.kernel_shape, ks.fft_shape), g32, ctx.bias,
                            ctx.in_dtype)
        return grad_u, None, None


def _fixed_kernel_conv(u: torch.Tensor, ks: KernelSpectrum, bias: torch.Tensor | None) -> torch.Tensor:
    if bias is not None and bias.requires_grad and torch.is_grad_enabled():
        raise ValueError("a precomputed kernel spectrum is for fixed kernels: the bias must not require grad")
    if tuple(u.shape[-len(ks.input_size):]) != ks.input_size:
        raise ValueError(f"the kernel spectrum was prepared for inputs of {ks.input_size}, "
                         f"got {tuple(u.shape[-len(ks.input_size):])}")
    return _FixedKernelConv.apply(u, ks, bias)


def fft_conv2d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None,
               k_spec: KernelSpectrum | None = None) -> torch.Tensor:
    """Per-channel centred 2D convolution ``u (B, C, h, w) * k (C, kh, kw)`` plus ``u * bias``.

    Computed in float32 (as the published models do) and returned in ``u``'s dtype.
    With ``k_spec`` (from :func:`kernel_spectrum`) the kernel is treated as fixed and the
    fixed-kernel autograd function is used; without it, gradients also reach ``k``.
    """
    if k_spec is not None:
        return _fixed_kernel_conv(u, k_spec, bias)
    h, w = u.shape[-2:]
    out_dtype = u.dtype
    u32 = u.float()
    _check_odd(k, 2)
    kc = crop_kernel(k.float(), (h, w))
    kh, kw = kc.shape[-2:]
    nh, nw = fft_size(h, kh), fft_size(w, kw)
    y = torch.fft.irfft2(torch.fft.rfft2(u32, s=(nh, nw)) * torch.fft.rfft2(kc, s=(nh, nw)), s=(nh, nw))
    y = y[..., kh // 2: kh // 2 + h, kw // 2: kw // 2 + w]
    if bias is not None:
        y = y + u32 * bias.float().reshape(1, -1, 1, 1)
    return y.to(out_dtype)


def fft_conv1d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None,
               k_spec: KernelSpectrum | None = None) -> torch.Tensor:
    """Per-channel centred 1D convolution ``u (B, C, n) * k (C, K)`` plus ``u * bias``;
    ``k_spec`` as in :func:`fft_conv2d`."""
    if k_spec is not None:
        return _fixed_kernel_conv(u, k_spec, bias)
    n = u.shape[-1]
    out_dtype = u.dtype
    u32 = u.float()
    _check_odd(k, 1)
    kc = crop_kernel(k.float(), (n,))
    K = kc.shape[-1]
    N = fft_size(n, K)
    y = torch.fft.irfft(torch.fft.rfft(u32, n=N) * torch.fft.rfft(kc, n=N), n=N)[..., K // 2: K // 2 + n]
    if bias is not None:
        y = y + u32 * bias.float().reshape(1, -1, 1)
    return y.to(out_dtype)


def causal_fft_conv1d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel causal convolution ``y[i] = sum_{j<=i} u[j] k[i-j]`` plus ``u * bias``."""
    n = u.shape[-1]
    out_dtype = u.dtype
    k = k[..., :n].float()
    N = next_fast_len(n + k.shape[-1] - 1)
    y = torch.fft.irfft(torch.fft.rfft(u.float(), n=N) * torch.fft.rfft(k, n=N), n=N)[..., :n]
    if bias is not None:
        y = y + u.float() * bias.float().reshape(1, -1, 1)
    return y.to(out_dtype)


def direct_conv2d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: the same centred convolution by ``F.conv2d`` (cross-correlation with the
    flipped kernel). Slow for long kernels; for tests and small inputs."""
    C, kh, kw = k.shape
    y = F.conv2d(u, k.flip(-1, -2).unsqueeze(1), padding=(kh // 2, kw // 2), groups=C)
    if bias is not None:
        y = y + u * bias.reshape(1, -1, 1, 1)
    return y


def direct_conv1d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference centred 1D convolution by ``F.conv1d``."""
    C, K = k.shape
    y = F.conv1d(u, k.flip(-1).unsqueeze(1), padding=K // 2, groups=C)
    if bias is not None:
        y = y + u * bias.reshape(1, -1, 1)
    return y
