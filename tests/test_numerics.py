"""full_float32: TF32 and autocast off inside; tf32: TF32 on inside; the caller's settings
restored after both."""

from __future__ import annotations

import pytest
import torch

from hpx_analysis.models.numerics import full_float32, tf32


def _tf32_set_to(allowed: bool):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def tf32_on():
    yield from _tf32_set_to(True)


@pytest.fixture
def tf32_off():
    yield from _tf32_set_to(False)


def test_tf32_off_inside_and_restored(tf32_on):
    with full_float32():
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def test_restored_after_an_error(tf32_on):
    with pytest.raises(RuntimeError):
        with full_float32("cpu"):
            raise RuntimeError("inside")
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32


def test_autocast_off_for_the_device_type():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        with full_float32("cpu"):
            assert (a @ b).dtype == torch.float32
        with full_float32():  # no device type: autocast left alone
            assert (a @ b).dtype == torch.bfloat16


def test_tf32_on_inside_and_restored_after_an_error(tf32_off):
    with pytest.raises(RuntimeError):
        with tf32():
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
            raise RuntimeError("inside")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
