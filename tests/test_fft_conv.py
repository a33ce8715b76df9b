"""The FFT long convolutions against direct convolutions (F.conv1d / F.conv2d)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from hpx_analysis.models import fft_conv
from hpx_analysis.models.fft_conv import (
    causal_fft_conv1d, crop_kernel, direct_conv1d, direct_conv2d, fast_even_len, fft_conv1d, fft_conv2d, fft_size,
    kernel_spectrum, next_fast_len,
)


def _smooth(n):
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


def test_next_fast_len_is_smallest_7_smooth():
    for n in range(1, 700):
        m = next_fast_len(n)
        assert m >= n and _smooth(m)
        assert not any(_smooth(k) for k in range(n, m))


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (7, 7), (8, 13), (20, 9), (28, 28)])
@pytest.mark.parametrize("kh,kw", [(1, 1), (3, 3), (13, 13), (27, 11), (55, 55)])
def test_fft_conv2d_matches_direct(h, w, kh, kw):
    g = torch.Generator().manual_seed(h * 100 + w * 10 + kh)
    u = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    k = torch.randn(3, kh, kw, generator=g, dtype=torch.float64)
    bias = torch.randn(3, generator=g, dtype=torch.float64)
    expected = direct_conv2d(u, k, bias)
    got = fft_conv2d(u.float(), k.float(), bias.float()).double()
    assert got.shape == u.shape
    scale = expected.abs().max().item() + 1e-12
    assert (got - expected).abs().max().item() / scale < 2e-5


def test_fft_conv2d_follows_centred_convolution_formula():
    # y[i,j] = sum_{p,q} u[p,q] K[i-p+kh//2, j-q+kw//2], written out in a loop
    u = torch.randn(1, 1, 4, 5, dtype=torch.float64)
    k = torch.randn(1, 5, 3, dtype=torch.float64)
    y = torch.zeros(4, 5, dtype=torch.float64)
    for i, j, p, q in itertools.product(range(4), range(5), range(4), range(5)):
        a, b = i - p + 2, j - q + 1
        if 0 <= a < 5 and 0 <= b < 3:
            y[i, j] += u[0, 0, p, q] * k[0, a, b]
    torch.testing.assert_close(fft_conv2d(u.float(), k.float())[0, 0].double(), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(direct_conv2d(u, k)[0, 0], y)


@pytest.mark.parametrize("n", [1, 2, 7, 49, 50, 196, 300])
@pytest.mark.parametrize("K", [1, 3, 97, 391])
def test_fft_conv1d_matches_direct(n, K):
    g = torch.Generator().manual_seed(n * 1000 + K)
    u = torch.randn(2, 4, n, generator=g, dtype=torch.float64)
    k = torch.randn(4, K, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    expected = direct_conv1d(u, k, bias)
    got = fft_conv1d(u.float(), k.float(), bias.float()).double()
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() / scale < 2e-5


@pytest.mark.parametrize("n,K", [(5, 5), (20, 20), (20, 8), (8, 20)])
def test_causal_fft_conv1d_matches_direct(n, K):
    u = torch.randn(1, 3, n, dtype=torch.float64)
    k = torch.randn(3, K, dtype=torch.float64)
    # causal conv = left-padded cross-correlation with the flipped kernel
    expected = F.conv1d(F.pad(u, (K - 1, 0)), k.flip(-1).unsqueeze(1), groups=3)
    got = causal_fft_conv1d(u.float(), k.float()).double()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_fft_size_is_exact_and_not_larger_than_full_linear_size():
    for n, K in itertools.product([1, 5, 7, 56, 64, 256], [1, 13, 27, 111, 191]):
        Kc = min(K, 2 * n - 1)
        N = fft_size(n, Kc)
        assert N >= n + Kc // 2 and N >= Kc  # no wrap-around in the kept window
        assert N % 2 == 0 and _smooth(N)
        assert N <= fast_even_len(n + Kc - 1)
    # the 1024 px first stage of an S18 model: much smaller than the published 2h = 512
    assert fft_size(256, 111) == 320


def test_fast_even_len_is_smallest_even_7_smooth():
    for n in range(0, 700):
        m = fast_even_len(n)
        assert m >= n and m % 2 == 0 and _smooth(m)
        assert not any(_smooth(k) for k in range(max(n, 2), m) if k % 2 == 0)


def test_crop_kernel_keeps_centre_taps():
    k = torch.arange(11.0).reshape(1, 11)
    torch.testing.assert_close(crop_kernel(k, (3,)), torch.tensor([[3.0, 4, 5, 6, 7]]))
    assert crop_kernel(k, (20,)).shape == (1, 11)


def test_precomputed_spectrum_gives_the_same_result():
    u = torch.randn(2, 3, 9, 12)
    k = torch.randn(3, 17, 23)
    bias = torch.randn(3)
    torch.testing.assert_close(fft_conv2d(u, k, bias, k_spec=kernel_spectrum(k, (9, 12))), fft_conv2d(u, k, bias))
    u1, k1 = torch.randn(2, 3, 40), torch.randn(3, 79)
    torch.testing.assert_close(fft_conv1d(u1, k1, bias, k_spec=kernel_spectrum(k1, (40,))), fft_conv1d(u1, k1, bias))


@pytest.mark.parametrize("h,w,kh,kw", [(9, 12, 17, 23), (7, 7, 3, 3), (5, 16, 41, 1), (1, 1, 5, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fixed_kernel_input_gradient_matches_direct_convolution(h, w, kh, kw, channels_last):
    # the fixed-kernel path has its own backward (convolution with the mirrored kernel):
    # compare its input gradient with autograd through F.conv2d in float64
    g = torch.Generator().manual_seed(h * 31 + kw)
    u = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    k = torch.randn(3, kh, kw, generator=g, dtype=torch.float64)
    bias = torch.randn(3, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    u_ref = u.clone().requires_grad_(True)
    (direct_conv2d(u_ref, k, bias) * weight).sum().backward()
    u32 = u.float()
    if channels_last:
        u32 = u32.contiguous(memory_format=torch.channels_last)
    u32.requires_grad_(True)
    y = fft_conv2d(u32, k.float(), bias.float(), k_spec=kernel_spectrum(k, (h, w)))
    (y * weight.float()).sum().backward()
    scale = u_ref.grad.abs().max().item()
    assert (u32.grad.double() - u_ref.grad).abs().max().item() / scale < 2e-5
    assert (y.double() - direct_conv2d(u, k, bias)).abs().max().item() / y.abs().max().item() < 2e-5
    if channels_last:  # the output keeps the input's layout
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("n,K", [(12, 23), (40, 79), (3, 201)])
def test_fixed_kernel_input_gradient_matches_direct_convolution_1d(n, K):
    g = torch.Generator().manual_seed(n + K)
    u = torch.randn(2, 4, n, generator=g, dtype=torch.float64)
    k = torch.randn(4, K, generator=g, dtype=torch.float64)
    bias = torch.randn(4, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 4, n, generator=g, dtype=torch.float64)
    u_ref = u.clone().requires_grad_(True)
    (direct_conv1d(u_ref, k, bias) * weight).sum().backward()
    u32 = u.float().requires_grad_(True)
    (fft_conv1d(u32, k.float(), bias.float(), k_spec=kernel_spectrum(k, (n,))) * weight.float()).sum().backward()
    assert (u32.grad.double() - u_ref.grad).abs().max().item() / u_ref.grad.abs().max().item() < 2e-5


def test_fixed_kernel_spectrum_checks_its_use():
    k = torch.randn(3, 5, 5)
    spec = kernel_spectrum(k, (8, 8))
    with pytest.raises(ValueError, match="prepared for inputs of"):
        fft_conv2d(torch.randn(1, 3, 8, 9), k, k_spec=spec)
    with pytest.raises(ValueError, match="must not require grad"):
        fft_conv2d(torch.randn(1, 3, 8, 8), k, torch.randn(3, requires_grad=True), k_spec=spec)
    # half-precision inputs come back in their dtype, gradients too
    u = torch.randn(1, 3, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    y = fft_conv2d(u, k, k_spec=spec)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and u.grad.dtype == torch.bfloat16


def test_channels_last_maps_are_padded_in_slabs_of_rows_exactly(monkeypatch):
    monkeypatch.setattr(fft_conv, "_COPY_SLAB_BYTES", 256)  # slabs of one row for these sizes
    src = torch.randn(2, 5, 13, 7).contiguous(memory_format=torch.channels_last)
    dst = torch.zeros(2, 5, 16, 10)
    fft_conv._copy_into(dst[..., :13, :7], src)
    assert torch.equal(dst[..., :13, :7], src)
    assert not dst[..., 13:, :].any() and not dst[..., :, 7:].any()
    # the whole convolution, forward and input gradient, with channels-last input and gradient
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 5, 13, 7, generator=g, dtype=torch.float64)
    k = torch.randn(5, 9, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 5, 13, 7, generator=g, dtype=torch.float64)
    u_ref = u.clone().requires_grad_(True)
    ref = direct_conv2d(u_ref, k)
    (ref * weight).sum().backward()
    u32 = u.float().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = fft_conv2d(u32, k.float(), k_spec=kernel_spectrum(k, (13, 7)))
    (y * weight.float().contiguous(memory_format=torch.channels_last)).sum().backward()
    assert (y.double() - ref).abs().max().item() / ref.abs().max().item() < 2e-5
    assert (u32.grad.double() - u_ref.grad).abs().max().item() / u_ref.grad.abs().max().item() < 2e-5


def test_plane_stride_is_the_smallest_odd_multiple_of_64_bytes_not_below_the_plane():
    from hpx_analysis.models.fft_conv import plane_stride

    for plane in [1, 16, 17, 48, 1600, 6400, 25600, 102400, 320 * 320 + 3]:
        m = plane_stride(plane)
        assert m >= plane and (4 * m) % 128 == 64  # 4 m bytes: an odd number of 64-byte lines
        assert all((4 * k) % 128 != 64 for k in range(plane, m))
    # 64 consecutive planes of a 4 KiB-multiple size start in 64 different 64-byte slots of a 4 KiB page
    m = plane_stride(320 * 320)
    assert len({(c * 4 * m) % 4096 // 64 for c in range(64)}) == 64
