"""The FFT long convolutions against direct convolutions (F.conv1d / F.conv2d)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from hpx_analysis.models.fft_conv import (
    causal_fft_conv1d,
    crop_kernel,
    direct_conv1d,
    direct_conv2d,
    fast_even_len,
    fft_conv1d,
    fft_conv2d,
    fft_size,
    next_fast_len,
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


def test_fft_conv2d_gradients_reach_input_kernel_and_bias():
    g = torch.Generator().manual_seed(4)
    u = torch.randn(1, 2, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(1, 2, 6, 5, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((fft_conv2d(u, k, bias) * weight).sum(), [u, k, bias])
    refs = torch.autograd.grad((direct_conv2d(u, k, bias) * weight).sum(), [u, k, bias])
    for got, ref in zip(grads, refs):
        assert (got.double() - ref).abs().max() / ref.abs().max() < 2e-5
