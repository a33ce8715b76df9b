"""Fixed-kernel FFT convolutions (hpx_analysis.models.fast.spectrum) against direct convolutions,
and the kernel cache of frozen models under fast_paths."""

import pytest
import timm
import torch

import hpx_analysis  # noqa: F401  (registers the models)
from hpx_analysis.models import long_conv_mixers
from hpx_analysis.models.fast import fast_paths, set_enabled, spectrum
from hpx_analysis.models.fast.spectrum import cached_kernel, fixed_kernel_conv, kernel_spectrum, plane_stride
from hpx_analysis.models.fft_conv import direct_conv1d, direct_conv2d, fft_conv1d, fft_conv2d
from hpx_analysis.models.mixers import Truncation


@pytest.fixture(autouse=True)
def fast_on():
    set_enabled(True)
    yield
    set_enabled(None)


def test_precomputed_spectrum_gives_the_same_result():
    u = torch.randn(2, 3, 9, 12)
    k = torch.randn(3, 17, 23)
    bias = torch.randn(3)
    torch.testing.assert_close(fixed_kernel_conv(u, kernel_spectrum(k, (9, 12)), bias), fft_conv2d(u, k, bias))
    u1, k1 = torch.randn(2, 3, 40), torch.randn(3, 79)
    torch.testing.assert_close(fixed_kernel_conv(u1, kernel_spectrum(k1, (40,)), bias), fft_conv1d(u1, k1, bias))


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
    y = fixed_kernel_conv(u32, kernel_spectrum(k, (h, w)), bias.float())
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
    (fixed_kernel_conv(u32, kernel_spectrum(k, (n,)), bias.float()) * weight.float()).sum().backward()
    assert (u32.grad.double() - u_ref.grad).abs().max().item() / u_ref.grad.abs().max().item() < 2e-5


def test_fixed_kernel_spectrum_checks_its_use():
    k = torch.randn(3, 5, 5)
    spec = kernel_spectrum(k, (8, 8))
    with pytest.raises(ValueError, match="prepared for inputs of"):
        fixed_kernel_conv(torch.randn(1, 3, 8, 9), spec)
    with pytest.raises(ValueError, match="must not require grad"):
        fixed_kernel_conv(torch.randn(1, 3, 8, 8), spec, torch.randn(3, requires_grad=True))
    # half-precision inputs come back in their dtype, gradients too
    u = torch.randn(1, 3, 8, 8, dtype=torch.bfloat16, requires_grad=True)
    y = fixed_kernel_conv(u, spec)
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and u.grad.dtype == torch.bfloat16


def test_channels_last_maps_are_padded_in_slabs_of_rows_exactly(monkeypatch):
    monkeypatch.setattr(spectrum, "_COPY_SLAB_BYTES", 256)  # slabs of one row for these sizes
    src = torch.randn(2, 5, 13, 7).contiguous(memory_format=torch.channels_last)
    dst = torch.zeros(2, 5, 16, 10)
    spectrum._copy_into(dst[..., :13, :7], src)
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
    y = fixed_kernel_conv(u32, kernel_spectrum(k, (13, 7)))
    (y * weight.float().contiguous(memory_format=torch.channels_last)).sum().backward()
    assert (y.double() - ref).abs().max().item() / ref.abs().max().item() < 2e-5
    assert (u32.grad.double() - u_ref.grad).abs().max().item() / u_ref.grad.abs().max().item() < 2e-5


def test_plane_stride_is_the_smallest_odd_multiple_of_64_bytes_not_below_the_plane():
    for plane in [1, 16, 17, 48, 1600, 6400, 25600, 102400, 320 * 320 + 3]:
        m = plane_stride(plane)
        assert m >= plane and (4 * m) % 128 == 64  # 4 m bytes: an odd number of 64-byte lines
        assert all((4 * k) % 128 != 64 for k in range(plane, m))
    # 64 consecutive planes of a 4 KiB-multiple size start in 64 different 64-byte slots of a 4 KiB page
    m = plane_stride(320 * 320)
    assert len({(c * 4 * m) % 4096 // 64 for c in range(64)}) == 64


def _frozen_s4():
    torch.manual_seed(0)
    return timm.create_model("hpx_former_s4").eval().requires_grad_(False)


def _entries(filt):
    return spectrum._caches[filt].entries


def test_kernel_cache_is_used_and_invalidated():
    model = _frozen_s4()
    x = torch.randn(1, 3, 64, 64)
    _, _, m = next(iter(long_conv_mixers(model)))
    key = ((16, 16), None, True)
    with fast_paths(model):
        y1 = model(x)
        assert len(_entries(m.long_conv)) == 1
        cached_kernel_ = _entries(m.long_conv)[key][0]
        model(x)
        assert _entries(m.long_conv)[key][0] is cached_kernel_  # reused, not recomputed
        with torch.no_grad():  # editing weights in place invalidates the cache
            m.long_conv.shift.add_(0.5)
        y2 = model(x)
        assert not torch.allclose(y1, y2)
        assert _entries(m.long_conv)[key][0] is not cached_kernel_
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            m.long_conv.shift.sub_(0.5)
        torch.testing.assert_close(model(x), y1)
        model.load_state_dict(sd)  # loading a state dict invalidates as well
        torch.testing.assert_close(model(x), y2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), y2, rtol=1e-4, atol=1e-5)  # the plain path agrees


def test_a_truncation_change_gives_a_new_kernel_and_the_plain_result():
    model = _frozen_s4()
    x = torch.randn(1, 3, 64, 64)
    with fast_paths(model):
        full = model(x)
        for _, _, m in long_conv_mixers(model):
            m.set_truncation(0.25)
        truncated = model(x)
    assert not torch.allclose(full, truncated)
    torch.testing.assert_close(truncated, model(x), rtol=1e-4, atol=1e-5)


def test_cached_kernel_is_full_float32():
    model = _frozen_s4()
    _, _, m = next(iter(long_conv_mixers(model)))
    with torch.no_grad():
        reference = m.long_conv.untruncated_kernel()
    with fast_paths(model), torch.autocast("cpu", dtype=torch.bfloat16):  # the filter network would run in bf16
        model(torch.randn(1, 3, 64, 64))
    kernel = _entries(m.long_conv)[((16, 16), None, True)][0]
    assert kernel.dtype == torch.float32
    torch.testing.assert_close(kernel, reference, rtol=0, atol=0)


def test_the_cache_keeps_a_few_entries_and_a_truncation_sweep_runs_the_filter_once(monkeypatch):
    model = _frozen_s4()
    _, _, m = next(iter(long_conv_mixers(model)))
    calls = []
    original = type(m.long_conv).untruncated_kernel
    monkeypatch.setattr(type(m.long_conv), "untruncated_kernel", lambda self: calls.append(1) or original(self))
    spectrum.clear_cache(m.long_conv)
    with torch.no_grad():
        for rel in (0.25, 0.5, 1.0, 1.5, None):
            m.long_conv.set_truncation(None if rel is None else Truncation(rel))
            cached_kernel(m.long_conv, (16, 16))
    assert len(calls) == 1 and len(_entries(m.long_conv)) == spectrum._MAX_ENTRIES


def test_training_mode_and_trainable_weights_take_the_plain_path():
    model = timm.create_model("hpx_former_s4").train()
    with fast_paths(model):
        model(torch.randn(1, 3, 64, 64)).sum().backward()
    _, _, m = next(iter(long_conv_mixers(model)))
    assert m.long_conv.z.grad is not None and m.long_conv.z.grad.abs().sum() > 0
    assert m.long_conv.deltas.grad is not None
