"""Long convolutions with a fixed kernel: its spectrum computed once, a backward of the same cost.

When the kernel needs no gradient (an eval-mode model with frozen parameters, as in every
analysis here), :class:`KernelSpectrum` holds the spectra of the kernel and of its mirror
image, and :func:`fixed_kernel_conv` runs a custom autograd function: the input gradient
of a centred convolution is the centred convolution of the output gradient with the
mirrored kernel, so the backward pass costs one real FFT and one inverse real FFT, like the
forward, and stores no activations. On the CPU the 2D inverse runs as one MKL call
(:mod:`.mkl_irfft2`).

:func:`cached_kernel` keeps, per long filter, the untruncated kernel per weight state (so a
truncation sweep does not re-run the filter network) and a few spectra per truncation and
input size, computed in full float32 (no autocast, no TF32). The weight state is the
parameters' and buffers' storage addresses and in-place version counters, so loading
weights or editing them in place invalidates it; writes through ``.data`` bypass the
version counter and are not seen.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from ..fft_conv import check_odd, crop_kernel, fft_size
from ..numerics import full_float32
from .mkl_irfft2 import irfft2

__all__ = [
    "KernelSpectrum",
    "kernel_spectrum",
    "plane_stride",
    "fixed_kernel_conv",
    "cached_kernel",
    "clear_cache",
]


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
    check_odd(k, nd)
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
        dst[:, :, start : start + rows].copy_(src[:, :, start : start + rows])


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
        grad_u = _plus_skip(
            _apply_spectrum(g32, ks.mirrored, ks.kernel_shape, ks.fft_shape), g32, ctx.bias, ctx.in_dtype
        )
        return grad_u, None, None


def fixed_kernel_conv(u: torch.Tensor, ks: KernelSpectrum, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The centred convolution of ``u (B, C, *n)`` with the fixed kernel of ``ks`` plus
    ``u * bias`` (as :func:`~..fft_conv.fft_conv2d` / ``fft_conv1d``), in float32, returned in
    ``u``'s dtype and memory layout; the input gradient is the convolution with the mirrored
    kernel and nothing else is kept."""
    if bias is not None and bias.requires_grad and torch.is_grad_enabled():
        raise ValueError("a precomputed kernel spectrum is for fixed kernels: the bias must not require grad")
    if tuple(u.shape[-len(ks.input_size) :]) != ks.input_size:
        raise ValueError(
            f"the kernel spectrum was prepared for inputs of {ks.input_size}, "
            f"got {tuple(u.shape[-len(ks.input_size) :])}"
        )
    return _FixedKernelConv.apply(u, ks, bias)


# ----------------------------------------------------------------------------- the cache
_MAX_ENTRIES = 4  # spectra kept per filter (truncations x input sizes)


@dataclass
class _FilterCache:
    state: tuple
    untruncated: torch.Tensor
    entries: OrderedDict = field(default_factory=OrderedDict)


_caches: weakref.WeakKeyDictionary[nn.Module, _FilterCache] = weakref.WeakKeyDictionary()


def _weight_state(filt: nn.Module) -> tuple:
    tensors = list(filt.parameters()) + list(filt.buffers())
    return tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)


def _device_type(filt: nn.Module) -> str:
    param = next(iter(filt.parameters()), None)
    return param.device.type if param is not None else "cpu"


@torch.compiler.disable
def cached_kernel(
    filt: nn.Module, input_size: tuple[int, ...], with_spectrum: bool = True
) -> tuple[torch.Tensor, KernelSpectrum | None]:
    """``(kernel, its KernelSpectrum for inputs of input_size)`` of a long filter (a
    :class:`~..mixers.filters.LongFilter`) whose parameters act as constants, kept between
    calls (see the module docstring); without ``with_spectrum`` the spectrum is None. Left
    out of ``torch.compile`` graphs: its check compares data pointers, which would make every
    block recompile."""
    state = _weight_state(filt)
    cache = _caches.get(filt)
    if cache is None or cache.state != state:
        # computed once, so in full float32 whatever the caller's autocast/TF32 settings
        # (cuDNN's default TF32 1x1 convolutions moved hpx_former_s18's ERF by 1.5%)
        with torch.no_grad(), full_float32(_device_type(filt)):
            cache = _caches[filt] = _FilterCache(state, filt.untruncated_kernel())
    key = (tuple(input_size), filt.truncation, with_spectrum)
    hit = cache.entries.get(key)
    if hit is None:
        with torch.no_grad():
            kernel = filt.truncate(cache.untruncated)
            hit = (kernel, kernel_spectrum(kernel, tuple(input_size)) if with_spectrum else None)
        while len(cache.entries) >= _MAX_ENTRIES:
            cache.entries.popitem(last=False)
        cache.entries[key] = hit
    return hit


def clear_cache(filt: nn.Module | None = None) -> None:
    """Drop the kept kernels of ``filt`` (of every filter with None)."""
    if filt is None:
        _caches.clear()
    else:
        _caches.pop(filt, None)
