"""MKL's 2D inverse real FFT against torch.fft.irfftn (the independent reference)."""

from __future__ import annotations

import platform

import pytest
import torch

from hpx_analysis.models.fast import mkl_irfft2
from hpx_analysis.models.fast.mkl_irfft2 import irfft2

needs_mkl = pytest.mark.skipif(not mkl_irfft2.available(), reason="this PyTorch build exports no MKL DFTI functions")


@pytest.mark.skipif(
    not (platform.system() == "Linux" and platform.machine() == "x86_64" and torch.backends.mkl.is_available()),
    reason="PyTorch's x86-64 Linux wheels only",
)
def test_the_mkl_path_is_found_in_x86_linux_wheels():
    # the fast path must not go missing silently where it exists (it would fall back to irfftn)
    assert mkl_irfft2.available()


def _spectrum(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.fft.rfftn(torch.randn(*shape, generator=g), dim=(-2, -1))


def _assert_close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert float((got - ref).abs().max()) <= 1e-6 * float(ref.abs().max())


@needs_mkl
@pytest.mark.parametrize("shape", [(1, 3, 12, 10), (2, 5, 9, 14), (7, 16, 16), (4, 6, 1, 8)])
def test_matches_irfftn_and_leaves_the_spectrum_alone(shape):
    spec = _spectrum(*shape)
    before = spec.clone()
    _assert_close(irfft2(spec, shape[-2:]), torch.fft.irfftn(spec, s=shape[-2:], dim=(-2, -1)))
    assert torch.equal(spec, before)


@needs_mkl
def test_round_trip_gives_the_signal_back():
    x = torch.randn(2, 3, 10, 6)
    _assert_close(irfft2(torch.fft.rfftn(x, dim=(-2, -1)), (10, 6)), x)


@needs_mkl
def test_non_contiguous_spectrum_and_other_thread_counts():
    spec = _spectrum(3, 8, 10).transpose(0, 1).contiguous().transpose(0, 1)  # same values, channel-inner layout
    assert not spec.is_contiguous()
    ref = torch.fft.irfftn(spec, s=(8, 10), dim=(-2, -1))
    threads = torch.get_num_threads()
    try:
        for n in (1, threads):
            torch.set_num_threads(n)
            _assert_close(irfft2(spec, (8, 10)), ref)
    finally:
        torch.set_num_threads(threads)


@needs_mkl
def test_descriptor_cache_is_bounded_and_stays_correct():
    for fw in range(2, 2 * mkl_irfft2._CACHE_SIZE + 4, 2):
        spec = _spectrum(2, 6, fw, seed=fw)
        _assert_close(irfft2(spec, (6, fw)), torch.fft.irfftn(spec, s=(6, fw), dim=(-2, -1)))
    assert len(mkl_irfft2._descriptors) <= mkl_irfft2._CACHE_SIZE
    spec = _spectrum(2, 6, 4, seed=1)  # an evicted shape is committed again
    _assert_close(irfft2(spec, (6, 4)), torch.fft.irfftn(spec, s=(6, 4), dim=(-2, -1)))


def test_falls_back_to_irfftn_where_it_does_not_apply():
    spec = _spectrum(2, 6, 8)
    ref = torch.fft.irfftn(spec, s=(6, 8), dim=(-2, -1))
    with mkl_irfft2.torch_fft_only():
        assert torch.equal(irfft2(spec, (6, 8)), ref)
    assert torch.equal(
        irfft2(spec.to(torch.complex128), (6, 8)), torch.fft.irfftn(spec.to(torch.complex128), s=(6, 8), dim=(-2, -1))
    )
    leaf = spec.clone().requires_grad_(True)  # autograd needs torch's op
    irfft2(leaf, (6, 8)).sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == spec.shape


@needs_mkl
def test_a_failed_mkl_call_raises_with_mkl_message():
    with pytest.raises(RuntimeError, match="MKL DFTI error 3: .+"):
        mkl_irfft2._check(3)


@needs_mkl
@pytest.mark.parametrize("shape, plane_stride", [((2, 3, 8, 10), 96), ((5, 6, 4), 24), ((6, 4), 40)])
def test_planes_placed_further_apart_hold_the_same_values(shape, plane_stride):
    spec = _spectrum(*shape)
    fh, fw = shape[-2:]
    out = irfft2(spec, (fh, fw), plane_stride=plane_stride)
    _assert_close(out, torch.fft.irfftn(spec, s=(fh, fw), dim=(-2, -1)))
    planes = out.reshape(-1, fh, fw)  # a view: the planes really are plane_stride floats apart
    assert out.stride()[-2:] == (fw, 1)
    if planes.shape[0] > 1:
        assert planes.stride(0) == plane_stride
        assert planes[1].data_ptr() - planes[0].data_ptr() == 4 * plane_stride


def test_a_plane_stride_below_the_plane_size_is_refused():
    with pytest.raises(ValueError, match="plane_stride 79 is smaller than a 8 x 10 plane"):
        irfft2(_spectrum(2, 8, 10), (8, 10), plane_stride=79)
