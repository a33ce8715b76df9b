"""The glibc heap-reuse settings the app applies at start-up."""
import platform

import pytest

from hpx_analysis.execution import allocator


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(allocator.HEAP_REUSE_ENV, "0")
    assert allocator.reuse_freed_memory() is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_on_glibc(monkeypatch):
    monkeypatch.delenv(allocator.HEAP_REUSE_ENV, raising=False)
    calls = []
    real = allocator._glibc()

    def recording_mallopt(param, value):
        calls.append((param, value))
        return real(param, value)

    monkeypatch.setattr(allocator, "_glibc", lambda: recording_mallopt)
    assert allocator.reuse_freed_memory() is True
    assert dict(calls) == {-3: allocator.MMAP_THRESHOLD, -1: allocator.TRIM_THRESHOLD, -2: allocator.TOP_PAD}
    assert all(0 < value < 2 ** 31 for _, value in calls)  # mallopt takes a C int


def test_a_refused_value_is_reported(monkeypatch):
    monkeypatch.delenv(allocator.HEAP_REUSE_ENV, raising=False)
    monkeypatch.setattr(allocator, "_glibc", lambda: lambda param, value: 0)
    assert allocator.reuse_freed_memory() is False
    monkeypatch.setattr(allocator, "_glibc", lambda: None)  # not glibc
    assert allocator.reuse_freed_memory() is False
