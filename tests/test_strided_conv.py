"""The phase decomposition of a strided convolution's input gradient against autograd's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hpx_analysis.models.fast import fast_paths, set_enabled
from hpx_analysis.models.fast.modules import FastStemConv2d
from hpx_analysis.models.fast.strided_conv import input_gradient, phase_kernel, supported
from hpx_analysis.models.layers import Downsampling, StemConv2d


@pytest.fixture(autouse=True)
def fast_on():
    set_enabled(True)
    yield
    set_enabled(None)


def _autograd_input_gradient(x, w, stride, padding, grad):
    xa = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.conv2d(xa, w, None, stride, padding), xa, grad)
    return g


@pytest.mark.parametrize(
    "k, s, p, size",
    [
        (7, 4, 2, (64, 64)),  # the MetaFormer stem
        (7, 4, 2, (37, 45)),  # sizes that are not multiples of the stride
        (3, 2, 1, (16, 11)),
        (4, 4, 0, (16, 20)),  # a patchify stem: one tap per phase
        (5, 3, 3, (14, 13)),  # padding beyond k // 2
    ],
)
def test_input_gradient_equals_autograd(k, s, p, size):
    g = torch.Generator().manual_seed(k * 100 + s * 10 + p)
    x = torch.randn(2, 3, *size, generator=g, dtype=torch.float64)
    w = torch.randn(5, 3, k, k, generator=g, dtype=torch.float64)
    out_shape = F.conv2d(x, w, None, s, p).shape
    grad = torch.randn(out_shape, generator=g, dtype=torch.float64)
    got = input_gradient(grad, phase_kernel(w, s, p), size)
    ref = _autograd_input_gradient(x, w, s, p, grad)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_each_phase_holds_only_the_taps_that_reach_it():
    # stem geometry: per axis, phase 1 of 4 is reached by tap 3 alone (offset 0)
    w = torch.arange(7 * 7, dtype=torch.float64).reshape(1, 1, 7, 7)
    phases = phase_kernel(w, 4, 2)
    assert (phases.e_min, phases.e_max) == (-1, 1) and phases.kernel.shape == (16, 1, 3, 3)
    k11 = phases.kernel[1 * 4 + 1, 0]  # phase (1, 1)
    assert k11[1, 1] == w[0, 0, 3, 3] and int((k11 != 0).sum()) == 1


def test_stem_conv_takes_the_phase_path_only_with_fixed_weights():
    torch.manual_seed(0)
    conv = StemConv2d(3, 8, 7, stride=4, padding=2)
    x = torch.randn(2, 3, 40, 36).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(F.conv2d(x, conv.weight, None, 4, 2).shape)
    xa = x.clone().requires_grad_(True)
    with fast_paths(conv):
        assert type(conv) is FastStemConv2d
        y = conv(xa)
        assert "FixedStridedConv2d" not in type(y.grad_fn).__name__  # trainable: weight grads flow
        conv.eval().requires_grad_(False)
        xb = x.clone().requires_grad_(True)
        y = conv(xb)
    assert "FixedStridedConv2d" in type(y.grad_fn).__name__
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, 4, 2), rtol=0, atol=0)
    (got,) = torch.autograd.grad(y, xb, grad)
    ref = _autograd_input_gradient(x.double(), conv.weight.double(), 4, 2, grad.double())
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    assert set(conv.state_dict()) == {"weight", "bias"}


def test_only_square_strided_geometries_are_supported():
    assert supported(StemConv2d(3, 4, 7, stride=4, padding=2))
    assert not supported(StemConv2d(3, 4, 3, stride=1, padding=1))
    assert not supported(StemConv2d(3, 4, (7, 5), stride=4, padding=2))
    assert not supported(StemConv2d(3, 4, 7, stride=(4, 2), padding=2))


def test_only_the_stem_uses_it():
    stem, merge = Downsampling(3, 8, 7, 4, 2, post_norm=True), Downsampling(8, 16, 3, 2, 1, pre_norm=True)
    assert type(stem.conv) is StemConv2d and type(merge.conv) is torch.nn.Conv2d
    with fast_paths(stem), fast_paths(merge):
        assert type(stem.conv) is FastStemConv2d and type(merge.conv) is torch.nn.Conv2d
