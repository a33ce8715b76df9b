"""How this process's C allocator hands out and returns large buffers (Linux, glibc).

PyTorch's CPU tensors come from ``malloc``. By default glibc serves every buffer above a
few megabytes (its adaptive ``mmap`` threshold, at most 32 MiB) with a fresh ``mmap`` and
gives it back to the kernel on ``free``. An ERF pass at 1024 px allocates and frees
hundreds of such activations per image, so every new one is zero-filled page by page by
the kernel before use: on this project's 2-core VM that was 0.3 s of system time per
hpx_former_s18 image and a matrix product on fresh 50 MB outputs ran at 70 instead of
176 GFLOP/s. :func:`reuse_freed_memory` tells glibc to serve buffers up to 1 GiB from the
heap and to keep freed heap memory for reuse (``mallopt``), so the pages are faulted in
once per process; the resident peak (``VmHWM``) is that of the largest working set, as
before.

The ``hpx-analyze`` app calls it at start-up; ``HPX_ANALYSIS_HEAP_REUSE=0`` in the
environment switches it off. Elsewhere (other C libraries, other systems) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["reuse_freed_memory", "HEAP_REUSE_ENV", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "TOP_PAD"]

HEAP_REUSE_ENV = "HPX_ANALYSIS_HEAP_REUSE"

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # buffers below 1 GiB come from the heap
TRIM_THRESHOLD = 2**31 - 1  # return heap memory to the kernel only above ~2 GiB free at the top
TOP_PAD = 256 << 20  # grow the heap 256 MiB at a time (untouched pages cost nothing)


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def reuse_freed_memory() -> bool:
    """Keep large freed buffers in the heap for reuse (see the module docstring). Returns
    whether the settings were applied: False where switched off by ``HPX_ANALYSIS_HEAP_REUSE=0``,
    outside glibc, or where glibc refused a value."""
    if os.environ.get(HEAP_REUSE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    mallopt = _glibc()
    if mallopt is None:
        return False
    return all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
