"""Telling "the device ran out of memory" apart from other errors.

PyTorch raises ``torch.OutOfMemoryError`` when its caching allocator cannot serve a CUDA
buffer. Other failed allocations come as plain ``RuntimeError``s: the CPU allocator's
("can't allocate memory"), and those of the GPU libraries that allocate outside the
caching allocator (cuFFT plans, cuDNN and cuBLAS handles), which report their own status
codes. cuFFT has also been seen to report an internal error when free memory runs low
(pytorch/pytorch#119420). Callers retry such a failure with less work (the ERF on fewer
images at a time) or record it (the runtime sweep).
"""

from __future__ import annotations

import torch

__all__ = ["is_out_of_memory"]

_MESSAGES = ("out of memory", "can't allocate memory")
_LIBRARY_CODES = (
    "CUFFT_ALLOC_FAILED",
    "CUFFT_INTERNAL_ERROR",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_ALLOC_FAILED",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that memory ran out (see the module docstring)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc)
    return any(m in text.lower() for m in _MESSAGES) or any(code in text for code in _LIBRARY_CODES)
