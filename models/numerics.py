"""Full float32 arithmetic on demand.

On CUDA, PyTorch runs float32 cuDNN convolutions in TF32 by default (10-bit mantissa;
``torch.backends.cudnn.allow_tf32``), and matrix products too where
``torch.backends.cuda.matmul.allow_tf32`` is set. Under autocast, convolutions and
products run in half precision. For work that must be float32 (a kernel computed once and
cached, an ERF asked for in fp32), :func:`full_float32` switches both off for its duration
and restores the caller's settings afterwards; :func:`tf32` switches both on (an ERF asked
for in tf32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["full_float32", "tf32"]


@contextlib.contextmanager
def _tf32_allowed(allowed: bool) -> Iterator[None]:
    """Set TF32 for cuDNN convolutions and cuBLAS products; restore the caller's flags after."""
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = allowed
        torch.backends.cuda.matmul.allow_tf32 = allowed
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


@contextlib.contextmanager
def full_float32(device_type: str | None = None) -> Iterator[None]:
    """No TF32 in cuDNN convolutions or cuBLAS products, and (when ``device_type`` is
    given) no autocast on that device type, for the duration; the flags are global, so
    backward passes run inside the block are covered too."""
    autocast = (
        torch.autocast(device_type=device_type, enabled=False) if device_type is not None else contextlib.nullcontext()
    )
    with _tf32_allowed(False), autocast:
        yield


def tf32() -> contextlib.AbstractContextManager[None]:
    """TF32 in cuDNN convolutions and cuBLAS products (CUDA) for the duration; the caller's
    settings are restored afterwards."""
    return _tf32_allowed(True)
