"""The glibc heap-reuse settings the app applies at start-up."""

import json
import os
import platform
import subprocess
import sys

import pytest

from hpx_analysis.execution import allocator


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(allocator.HEAP_REUSE_ENV, "0")
    assert allocator.reuse_freed_memory() is False


# applying the settings changes this process's allocator for good: done in a child process
_APPLY_AND_RECORD = """
import json
from hpx_analysis.execution import allocator
real = allocator._glibc()
calls = []
def recording_mallopt(param, value):
    calls.append((param, value))
    return real(param, value)
allocator._glibc = lambda: recording_mallopt
print(json.dumps({"applied": allocator.reuse_freed_memory(), "calls": calls}))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_on_glibc():
    env = {k: v for k, v in os.environ.items() if k != allocator.HEAP_REUSE_ENV}
    out = subprocess.run([sys.executable, "-c", _APPLY_AND_RECORD], env=env, capture_output=True, text=True, check=True)
    record = json.loads(out.stdout)
    assert record["applied"] is True
    calls = [tuple(c) for c in record["calls"]]
    assert dict(calls) == {-3: allocator.MMAP_THRESHOLD, -1: allocator.TRIM_THRESHOLD, -2: allocator.TOP_PAD}
    assert all(0 < value < 2**31 for _, value in calls)  # mallopt takes a C int


def test_a_refused_value_is_reported(monkeypatch):
    monkeypatch.delenv(allocator.HEAP_REUSE_ENV, raising=False)
    monkeypatch.setattr(allocator, "_glibc", lambda: lambda param, value: 0)
    assert allocator.reuse_freed_memory() is False
    monkeypatch.setattr(allocator, "_glibc", lambda: None)  # not glibc
    assert allocator.reuse_freed_memory() is False
