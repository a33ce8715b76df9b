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

The fixed-kernel variant (cached kernel spectra, a backward with the mirrored kernel,
MKL's 2D inverse FFT) is in :mod:`.fast.spectrum`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "next_fast_len",
    "fast_even_len",
    "crop_kernel",
    "fft_size",
    "check_odd",
    "fft_conv1d",
    "fft_conv2d",
    "causal_fft_conv1d",
    "direct_conv1d",
    "direct_conv2d",
]


def next_fast_len(n: int) -> int:
    """The smallest 7-smooth length at least ``n`` (fast for cuFFT and pocketfft).

    Args:
        n: the least length.

    Returns:
        int: the smallest integer >= n whose prime factors are 2, 3, 5 or 7 (1 for n <= 1).
    """
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


def fast_even_len(n: int) -> int:
    """The FFT lengths used here: even and 7-smooth.

    A real FFT of even length runs as a complex FFT of half the length; odd lengths lose
    that (measured on this project's CPU: 2.5x slower per point at 315 than at 320).

    Args:
        n: the least length.

    Returns:
        int: the smallest even 7-smooth integer >= max(n, 2).
    """
    m = next_fast_len(max(n, 2))
    while m % 2:
        m = next_fast_len(m + 1)
    return m


def crop_kernel(k: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Crop a centred, odd-sized kernel to the taps that can reach an input.

    Args:
        k: the kernel; its last ``len(sizes)`` dims are the kernel axes.
        sizes: the input length along each kernel axis.

    Returns:
        torch.Tensor: a view of ``k`` with at most ``2n - 1`` taps per axis, still centred.
    """
    slices = [slice(None)] * (k.ndim - len(sizes))
    for n, K in zip(sizes, k.shape[-len(sizes) :]):
        keep = min(K, 2 * n - 1)
        start = K // 2 - keep // 2
        slices.append(slice(start, start + keep))
    return k[tuple(slices)]


def fft_size(n: int, kernel_len: int) -> int:
    """The FFT length for an exact centred convolution.

    Args:
        n: the input length.
        kernel_len: the kernel's taps along that axis (already cropped, see :func:`crop_kernel`).

    Returns:
        int: the smallest even 7-smooth length at least ``n + kernel_len // 2`` and ``kernel_len``.
    """
    return fast_even_len(max(n + kernel_len // 2, kernel_len))


def check_odd(k: torch.Tensor, ndim: int) -> None:
    """Check that a centred kernel has odd sizes.

    Args:
        k: the kernel.
        ndim: how many trailing dims are kernel axes.

    Raises:
        ValueError: a kernel axis has an even size.
    """
    for K in k.shape[-ndim:]:
        if K % 2 != 1:
            raise ValueError(f"centred long convolutions need odd kernel sizes, got {tuple(k.shape[-ndim:])}")


def fft_conv2d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel centred 2D convolution plus a skip term, by the FFT.

    Computed in float32 (as the published models do); differentiable in ``u``, ``k`` and
    ``bias``.

    Args:
        u: the input ``(B, C, h, w)``.
        k: the kernels ``(C, kh, kw)``, odd sizes, centred.
        bias: per-channel weights ``(C,)`` of the term ``u * bias``, or None.

    Returns:
        torch.Tensor: ``(B, C, h, w)`` in ``u``'s dtype: ``u * k`` (zero padding) plus ``u * bias``.

    Raises:
        ValueError: a kernel size is even.
    """
    h, w = u.shape[-2:]
    out_dtype = u.dtype
    u32 = u.float()
    check_odd(k, 2)
    kc = crop_kernel(k.float(), (h, w))
    kh, kw = kc.shape[-2:]
    nh, nw = fft_size(h, kh), fft_size(w, kw)
    y = torch.fft.irfft2(torch.fft.rfft2(u32, s=(nh, nw)) * torch.fft.rfft2(kc, s=(nh, nw)), s=(nh, nw))
    y = y[..., kh // 2 : kh // 2 + h, kw // 2 : kw // 2 + w]
    if bias is not None:
        y = y + u32 * bias.float().reshape(1, -1, 1, 1)
    return y.to(out_dtype)


def fft_conv1d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel centred 1D convolution plus a skip term, by the FFT (in float32).

    Args:
        u: the input ``(B, C, n)``.
        k: the kernels ``(C, K)``, K odd, centred.
        bias: per-channel weights ``(C,)`` of the term ``u * bias``, or None.

    Returns:
        torch.Tensor: ``(B, C, n)`` in ``u``'s dtype: ``u * k`` (zero padding) plus ``u * bias``.

    Raises:
        ValueError: K is even.
    """
    n = u.shape[-1]
    out_dtype = u.dtype
    u32 = u.float()
    check_odd(k, 1)
    kc = crop_kernel(k.float(), (n,))
    K = kc.shape[-1]
    N = fft_size(n, K)
    y = torch.fft.irfft(torch.fft.rfft(u32, n=N) * torch.fft.rfft(kc, n=N), n=N)[..., K // 2 : K // 2 + n]
    if bias is not None:
        y = y + u32 * bias.float().reshape(1, -1, 1)
    return y.to(out_dtype)


def causal_fft_conv1d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel causal convolution plus a skip term, by the FFT (in float32).

    Args:
        u: the input ``(B, C, n)``.
        k: the kernels ``(C, K)``; taps beyond ``n`` cannot reach the input and are dropped.
        bias: per-channel weights ``(C,)`` of the term ``u * bias``, or None.

    Returns:
        torch.Tensor: ``y[i] = sum_{j<=i} u[j] k[i-j]`` plus ``u * bias``, ``(B, C, n)`` in
        ``u``'s dtype.
    """
    n = u.shape[-1]
    out_dtype = u.dtype
    k = k[..., :n].float()
    N = next_fast_len(n + k.shape[-1] - 1)
    y = torch.fft.irfft(torch.fft.rfft(u.float(), n=N) * torch.fft.rfft(k, n=N), n=N)[..., :n]
    if bias is not None:
        y = y + u.float() * bias.float().reshape(1, -1, 1)
    return y.to(out_dtype)


def direct_conv2d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference for :func:`fft_conv2d`: the same centred convolution by ``F.conv2d``
    (cross-correlation with the flipped kernel). Slow for long kernels; for tests and small
    inputs.

    Args:
        u: the input ``(B, C, h, w)``.
        k: the kernels ``(C, kh, kw)``, odd sizes, centred.
        bias: per-channel weights ``(C,)`` of the term ``u * bias``, or None.

    Returns:
        torch.Tensor: ``(B, C, h, w)`` in ``u``'s dtype.
    """
    C, kh, kw = k.shape
    y = F.conv2d(u, k.flip(-1, -2).unsqueeze(1), padding=(kh // 2, kw // 2), groups=C)
    if bias is not None:
        y = y + u * bias.reshape(1, -1, 1, 1)
    return y


def direct_conv1d(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference for :func:`fft_conv1d`: the same centred convolution by ``F.conv1d``.

    Args:
        u: the input ``(B, C, n)``.
        k: the kernels ``(C, K)``, K odd, centred.
        bias: per-channel weights ``(C,)`` of the term ``u * bias``, or None.

    Returns:
        torch.Tensor: ``(B, C, n)`` in ``u``'s dtype.
    """
    C, K = k.shape
    y = F.conv1d(u, k.flip(-1).unsqueeze(1), padding=K // 2, groups=C)
    if bias is not None:
        y = y + u * bias.reshape(1, -1, 1)
    return y
