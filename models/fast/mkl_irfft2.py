"""2D inverse real FFTs on the CPU in one call to Intel MKL's DFTI interface.

``torch.fft.irfftn`` over two axes does not hand the whole transform to MKL: it runs a
complex inverse FFT over the first axis, then a 1D complex-to-real FFT over the last,
and between the two it copies the spectrum twice, once with a transposition (the first
transform leaves the transformed axis innermost). On this project's 2-core CPU those
copies cost as much as the transform itself: for the 64 channels of a 320 x 320 FFT
(the first stage of hpx_former_s18 at 1024 px) ``irfftn`` takes about 15 ms and one MKL
2D complex-to-real call about 9 ms (``benchmarks/irfft2_backends.py`` prints both).

PyTorch's CPU wheels link MKL statically and export its DFTI functions from
``libtorch_cpu``; this module calls them through ``ctypes``. The path is probed once
(:mod:`.probe`) against ``irfftn``; where the functions are missing (builds whose FFTs use
pocketfft, such as macOS arm64 wheels), fail or disagree, or for tensors this path does
not cover (not on the CPU, not complex64, under ``torch.compile``), :func:`irfft2` falls
back to ``torch.fft.irfftn``. Results agree with ``irfftn`` to float32 rounding; the
spectrum is left unchanged.

Descriptors are committed once per (FFT shape, number of transforms, output plane
stride, thread count) and kept in a small cache.

``plane_stride`` places the output planes further apart than ``fh * fw`` floats. A plane
whose size in bytes is a multiple of 4 KiB (320 x 320 and 160 x 160 floats, the first two
stages at 1024 px) puts the same pixel of every channel into the same set of the CPU's
L1 cache, and an operation that reads all channels of a pixel together (the transposing
add back into the channels-last layout) then misses the cache on almost every read:
7 ms against 2.5 ms for the first stage's 64 channels (see :func:`.spectrum.plane_stride`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator

import torch

from . import probe

__all__ = ["PROBE", "available", "irfft2", "torch_fft_only"]

PROBE = "mkl_irfft2"

# DFTI configuration parameters and values (mkl_dfti.h)
_NUMBER_OF_TRANSFORMS, _BACKWARD_SCALE = 7, 5
_CONJUGATE_EVEN_STORAGE, _PLACEMENT = 10, 11
_INPUT_STRIDES, _OUTPUT_STRIDES, _INPUT_DISTANCE, _OUTPUT_DISTANCE = 12, 13, 14, 15
_THREAD_LIMIT = 27
_REAL, _COMPLEX_COMPLEX, _NOT_INPLACE = 33, 39, 44

_CACHE_SIZE = 16
_lock = threading.Lock()
_descriptors: OrderedDict[tuple, ctypes.c_void_p] = OrderedDict()
_use_mkl = True


def _load_dfti():
    """MKL's DFTI functions as exported by libtorch_cpu, or None."""
    path = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    try:
        lib = ctypes.CDLL(path)
        funcs = {
            name: getattr(lib, name)
            for name in (
                "DftiCreateDescriptor_s_md",
                "DftiSetValue",
                "DftiCommitDescriptor",
                "DftiComputeBackward",
                "DftiFreeDescriptor",
                "DftiErrorMessage",
            )
        }
    except (OSError, AttributeError):
        return None
    for name, func in funcs.items():  # statuses are MKL_LONG (C long); the message is a C string
        func.restype = ctypes.c_char_p if name == "DftiErrorMessage" else ctypes.c_long
    return funcs


_dfti = _load_dfti() if torch.backends.mkl.is_available() else None


def _probe() -> str | None:
    if _dfti is None:
        return "MKL's DFTI functions are not exported by this PyTorch build"
    g = torch.Generator().manual_seed(0)
    spectrum = torch.fft.rfftn(torch.randn(3, 6, 8, generator=g), dim=(-2, -1))
    return probe.compare(
        _mkl_irfft2(spectrum, (6, 8), 6 * 8 + 5),
        torch.fft.irfftn(spectrum, s=(6, 8), dim=(-2, -1)),
        "MKL's 2D inverse FFT",
    )


probe.register(probe.Check(PROBE, _probe, "torch.fft.irfftn"))


def available() -> bool:
    """Whether MKL's DFTI functions were found in this PyTorch build and give irfftn's result."""
    return probe.passes(PROBE)


@contextlib.contextmanager
def torch_fft_only() -> Iterator[None]:
    """Use ``torch.fft.irfftn`` for the duration (for comparisons and benchmarks)."""
    global _use_mkl
    before, _use_mkl = _use_mkl, False
    try:
        yield
    finally:
        _use_mkl = before


def _check(status: int) -> None:
    if status != 0:
        raise RuntimeError(f"MKL DFTI error {status}: {_dfti['DftiErrorMessage'](ctypes.c_long(status)).decode()}")


def _set(handle: ctypes.c_void_p, param: int, value) -> None:
    _check(_dfti["DftiSetValue"](handle, ctypes.c_int(param), value))


def _descriptor(fh: int, fw: int, count: int, plane_stride: int, threads: int) -> ctypes.c_void_p:
    """A committed descriptor for ``count`` out-of-place complex-to-real transforms of
    ``fh x fw``, scaled by ``1 / (fh * fw)`` (torch's default "backward" normalization),
    on contiguous ``(count, fh, fw // 2 + 1)`` spectra; output plane ``i`` starts at float
    ``i * plane_stride``, its rows ``fw`` floats apart."""
    key = (fh, fw, count, plane_stride, threads)
    handle = _descriptors.get(key)
    if handle is not None:
        _descriptors.move_to_end(key)
        return handle
    c_long = ctypes.c_long
    half = fw // 2 + 1
    handle = ctypes.c_void_p()
    _check(
        _dfti["DftiCreateDescriptor_s_md"](ctypes.byref(handle), ctypes.c_int(_REAL), c_long(2), (c_long * 2)(fh, fw))
    )
    try:
        _set(handle, _CONJUGATE_EVEN_STORAGE, ctypes.c_int(_COMPLEX_COMPLEX))
        _set(handle, _PLACEMENT, ctypes.c_int(_NOT_INPLACE))
        _set(handle, _NUMBER_OF_TRANSFORMS, c_long(count))
        _set(handle, _INPUT_STRIDES, (c_long * 3)(0, half, 1))
        _set(handle, _OUTPUT_STRIDES, (c_long * 3)(0, fw, 1))
        _set(handle, _INPUT_DISTANCE, c_long(fh * half))
        _set(handle, _OUTPUT_DISTANCE, c_long(plane_stride))
        _set(handle, _BACKWARD_SCALE, ctypes.c_double(1.0 / (fh * fw)))
        _set(handle, _THREAD_LIMIT, c_long(threads))
        _check(_dfti["DftiCommitDescriptor"](handle))
    except RuntimeError:
        _dfti["DftiFreeDescriptor"](ctypes.byref(handle))
        raise
    _descriptors[key] = handle
    while len(_descriptors) > _CACHE_SIZE:
        _, old = _descriptors.popitem(last=False)
        _dfti["DftiFreeDescriptor"](ctypes.byref(old))
    return handle


def irfft2(spectrum: torch.Tensor, fft_shape: tuple[int, int], plane_stride: int | None = None) -> torch.Tensor:
    """``torch.fft.irfftn(spectrum, s=fft_shape, dim=(-2, -1))`` for a half spectrum
    ``(..., fh, fw // 2 + 1)``: one MKL call on the CPU where possible.

    With ``plane_stride`` (at least ``fh * fw``) the MKL path returns the planes as a view
    whose planes start ``plane_stride`` floats apart (rows still contiguous); the values
    are the same. The fallback ignores it and returns a contiguous tensor."""
    fh, fw = fft_shape
    plane_stride = fh * fw if plane_stride is None else int(plane_stride)
    if plane_stride < fh * fw:
        raise ValueError(f"plane_stride {plane_stride} is smaller than a {fh} x {fw} plane")
    if (
        not _use_mkl
        or spectrum.device.type != "cpu"
        or spectrum.dtype != torch.complex64
        or tuple(spectrum.shape[-2:]) != (fh, fw // 2 + 1)
        or spectrum.numel() == 0
        or (torch.is_grad_enabled() and spectrum.requires_grad)
        or torch.compiler.is_compiling()
        or not probe.passes(PROBE)
    ):
        return torch.fft.irfftn(spectrum, s=fft_shape, dim=(-2, -1))
    return _mkl_irfft2(spectrum, fft_shape, plane_stride)


def _mkl_irfft2(spectrum: torch.Tensor, fft_shape: tuple[int, int], plane_stride: int) -> torch.Tensor:
    """The MKL call of :func:`irfft2` (a complex64 CPU half spectrum)."""
    fh, fw = fft_shape
    spectrum = spectrum.contiguous()
    count = spectrum.numel() // (fh * (fw // 2 + 1))
    storage = spectrum.new_empty((count - 1) * plane_stride + fh * fw, dtype=torch.float32)
    with _lock:
        handle = _descriptor(fh, fw, count, plane_stride, torch.get_num_threads())
        _check(
            _dfti["DftiComputeBackward"](
                handle, ctypes.c_void_p(spectrum.data_ptr()), ctypes.c_void_p(storage.data_ptr())
            )
        )
    lead = spectrum.shape[:-2]
    strides = [fw, 1]
    step = plane_stride
    for size in reversed(lead):
        strides.insert(0, step)
        step *= size
    return storage.as_strided((*lead, fh, fw), strides)
