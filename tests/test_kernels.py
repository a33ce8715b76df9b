"""Kernel maps (Fig. 4): orientation, normalization, picks and the H_b wrap."""

import numpy as np
import pytest
import timm
import torch

import hpx_analysis  # noqa: F401
from hpx_analysis.kernels import (
    NoLongKernelsError,
    kernel_maps,
    normalize_map,
    top_energy_channel,
    wrap_1d_kernel,
)
from hpx_analysis.models import fft_conv2d, long_conv_mixers


@pytest.fixture(scope="module")
def hpx_s4():
    torch.manual_seed(0)
    return timm.create_model("hpx_former_s4").eval()


@pytest.fixture(scope="module")
def hb_s4():
    torch.manual_seed(0)
    return timm.create_model("hb_former_s4").eval()


def test_wrap_single_tap_lands_on_expected_pixel():
    h, w = 4, 5
    lf = 2 * h * w - 1
    k = np.zeros(lf)
    d = 7
    k[lf // 2 + d] = 1.0
    # output (2, 3) is token 13; the tap links input token 13 - 7 = 6 = (1, 1)
    m = wrap_1d_kernel(k, (h, w), at=(2, 3))
    assert m.shape == (h, w)
    assert np.argwhere(m != 0).tolist() == [[1, 1]]
    # the wrap crosses a row boundary: output (2, 0) = token 10 -> input token 3 = (0, 3)
    m = wrap_1d_kernel(k, (h, w), at=(2, 0))
    assert np.argwhere(m != 0).tolist() == [[0, 3]]
    # a negative offset points forward in raster order: output (0, 0) takes input (1, 2)
    k2 = np.zeros(lf)
    k2[lf // 2 - 7] = 2.0
    m = wrap_1d_kernel(k2, (h, w), at=(0, 0))
    assert np.argwhere(m != 0).tolist() == [[1, 2]] and m[1, 2] == 2.0


def test_wrap_causal_zero_after_output():
    h, w = 3, 3
    k = np.arange(1.0, h * w + 1)  # k[0] = 1 is the current token
    m = wrap_1d_kernel(k, (h, w), at=(1, 1), bidirectional=False)  # token 4
    expected = np.array([[5, 4, 3], [2, 1, 0], [0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(m, expected)


def test_wrap_rejects_position_outside_map():
    with pytest.raises(ValueError, match="outside"):
        wrap_1d_kernel(np.zeros(7), (2, 2), at=(2, 0))


def test_hb_model_wrap_places_single_tap(hb_s4):
    stage, block, mixer = [t for t in long_conv_mixers(hb_s4) if t[0] == 3][0]
    h, w = mixer.feature_size
    filt = mixer.filter_fn
    lf = filt.kernel_shape[0]
    k = torch.zeros(mixer.dim, lf)
    k[0, lf // 2 + 9] = -3.0  # channel 0: one tap, 9 tokens back = one row + two columns
    k[1:, lf // 2] = 0.5  # others: only the centre tap
    filt.untruncated_kernel = lambda: k  # instance override: construct the kernel directly
    try:
        res = kernel_maps(hb_s4, channel=0, at=(4, 4))
    finally:
        del filt.untruncated_kernel
    sk = res.stages[-1]
    assert sk.kernel_ndim == 1 and sk.at == (4, 4) and sk.channel == 0 and not sk.channel_auto
    # output (4, 4) = token 32 with w = 7; input token 23 = (3, 2)
    assert np.argwhere(sk.picked != 0).tolist() == [[3, 2]]
    assert sk.picked[3, 2] == -1.0  # normalized by max |value|
    # mean map: -3/C at (3, 2) and 0.5 (C-1)/C at the output pixel itself
    assert sorted(map(tuple, np.argwhere(sk.mean != 0).tolist())) == [(3, 2), (4, 4)]
    assert sk.mean[4, 4] == pytest.approx(1.0)
    assert sk.mean[3, 2] == pytest.approx(-3.0 / (0.5 * (mixer.dim - 1)))


def test_2d_orientation_matches_convolution():
    """The documented convention: K[a, b] takes the input at (i - (a - kh//2), j - (b - kw//2))."""
    kh = kw = 7
    K = torch.zeros(1, kh, kw)
    a, b = 1, 5  # offset (-2, +2) from the centre
    K[0, a, b] = 1.0
    u = torch.zeros(1, 1, 9, 9)
    p, q = 4, 3
    u[0, 0, p, q] = 1.0
    y = fft_conv2d(u, K, torch.zeros(1, 1, 1, 1))
    nz = torch.nonzero(y[0, 0].abs() > 1e-5).tolist()
    assert nz == [[p + (a - kh // 2), q + (b - kw // 2)]]


def test_hpx_mean_and_top_energy(hpx_s4):
    res = kernel_maps(hpx_s4, name="hpx_former_s4")
    assert [sk.stage for sk in res.stages] == [0, 1, 2, 3]
    for sk, (_, _, m) in zip(res.stages, long_conv_mixers(hpx_s4)):
        k = m.effective_kernel()
        assert sk.mean.shape == tuple(k.shape[1:])
        np.testing.assert_allclose(sk.mean, normalize_map(k.double().mean(0).numpy()))
        assert np.abs(sk.mean).max() == pytest.approx(1.0)
        energy = (k.double() ** 2).sum((1, 2))
        assert sk.channel == int(energy.argmax()) == top_energy_channel(k) and sk.channel_auto
        np.testing.assert_allclose(sk.picked, normalize_map(k[sk.channel].double().numpy()))
    arrays = res.arrays()
    assert {"stage0_mean", "stage0_picked", "stage3_channel"} <= set(arrays)


def test_block_and_channel_picks(hpx_s4):
    res = kernel_maps(hpx_s4, block=-1, channel=[1, 2, 3, 4])
    assert [sk.channel for sk in res.stages] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="block 1 does not exist"):
        kernel_maps(hpx_s4, block=1)
    with pytest.raises(ValueError, match="channel 64 does not exist"):
        kernel_maps(hpx_s4, channel=64)
    with pytest.raises(ValueError, match="one per stage"):
        kernel_maps(hpx_s4, channel=[1, 2])


def test_no_long_kernels_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(NoLongKernelsError, match="no long-convolution"):
        kernel_maps(model, name="tiny")
