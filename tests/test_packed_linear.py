"""oneDNN products with reordered constant weights against F.linear in float64."""

from __future__ import annotations

import gc
import platform

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpx_analysis.models import fast
from hpx_analysis.models.fast import packed_linear, weight_cache
from hpx_analysis.models.fast.fixed_weight import fixed_linear

needs_onednn = pytest.mark.skipif(
    not fast.available()[packed_linear.PROBE], reason="no working oneDNN linear operators in this build"
)


@pytest.mark.skipif(
    not (platform.system() == "Linux" and platform.machine() == "x86_64" and torch.backends.mkldnn.is_available()),
    reason="PyTorch's x86-64 Linux wheels only",
)
def test_the_packed_path_is_found_in_x86_linux_wheels():
    # the fast path must not go missing silently where it exists
    assert fast.available()[packed_linear.PROBE], fast.probe_report()
    assert packed_linear.applies(torch.zeros(2, 3))


def _reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x.double(), w.double(), None if b is None else b.double())


def _assert_float32_close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.dtype == torch.float32 and got.shape == ref.shape
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 24), (7, 24), (3000, 24), (2, 9, 13, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_products_equal_f_linear(shape, with_bias):
    g = torch.Generator().manual_seed(len(shape) + shape[0])
    x, w = torch.randn(*shape, generator=g), torch.randn(40, 24, generator=g)
    b = torch.randn(40, generator=g) if with_bias else None
    _assert_float32_close(
        packed_linear.linear(x, packed_linear.packed_weight(w, "weight", lambda: w), b), _reference(x, w, b)
    )


@needs_onednn
def test_cached_weights_are_reused_and_rebuilt_when_their_sources_change():
    g = torch.Generator().manual_seed(0)
    w, scale, x = torch.randn(16, 8, generator=g), torch.tensor([0.5]), torch.randn(5, 8, generator=g)

    def scaled():
        return packed_linear.packed_weight(w, "scaled", lambda: w * scale, depends=(scale,))

    first = scaled()
    assert scaled() is first  # cached
    _assert_float32_close(packed_linear.linear(x, first), _reference(x, w * scale, None))
    w.mul_(-2)  # in place: new version
    _assert_float32_close(packed_linear.linear(x, scaled()), _reference(x, w * scale, None))
    scale.fill_(3.0)  # a tensor the recipe depends on
    _assert_float32_close(packed_linear.linear(x, scaled()), _reference(x, w * scale, None))
    w.data = torch.randn(16, 8, generator=g)  # new storage
    _assert_float32_close(packed_linear.linear(x, scaled()), _reference(x, w * scale, None))


@needs_onednn
def test_cache_entries_go_with_their_owner():
    w = torch.randn(4, 3)
    packed_linear.packed_weight(w, "weight", lambda: torch.ones(4, 3))
    before = len(weight_cache._cache)
    del w
    gc.collect()
    assert len(weight_cache._cache) == before - 1


def test_not_taken_for_other_dtypes_or_under_cpu_autocast():
    assert not packed_linear.applies(torch.zeros(2, 3, dtype=torch.float64))
    assert not packed_linear.applies(torch.zeros(2, 3, dtype=torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not packed_linear.applies(torch.zeros(2, 3))


@needs_onednn
@pytest.mark.parametrize("shape", [(2, 9, 31, 24), (1, 24)])
def test_fixed_linear_in_float32_with_its_input_gradient(shape):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(*shape, generator=g)
    w, b = torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    out_grad = torch.randn(*shape[:-1], 40, generator=g)
    xa = x.clone().requires_grad_(True)
    y = fixed_linear(xa, w, b)
    (grad,) = torch.autograd.grad(y, xa, out_grad)
    _assert_float32_close(y.detach(), _reference(x, w, b))
    _assert_float32_close(grad, out_grad.double() @ w.double())  # the input gradient of x W^T + b


@needs_onednn
def test_weights_loaded_into_a_frozen_layer_are_used():
    torch.manual_seed(0)
    lin = nn.Linear(24, 40).eval().requires_grad_(False)
    x = torch.randn(300, 24)
    fast.set_enabled(True)
    try:
        with fast.fast_paths(lin) as swapped:
            assert swapped == 1
            _assert_float32_close(lin(x), _reference(x, lin.weight, lin.bias))
            lin.load_state_dict({"weight": torch.randn(40, 24), "bias": torch.randn(40)})
            _assert_float32_close(lin(x), _reference(x, lin.weight, lin.bias))
    finally:
        fast.set_enabled(None)


@needs_onednn
def test_the_fused_relu_is_the_relu_of_the_product():
    g = torch.Generator().manual_seed(11)
    x, w, b = torch.randn(300, 24, generator=g), torch.randn(40, 24, generator=g), torch.randn(40, generator=g)
    got = packed_linear.linear(x, packed_linear.packed_weight(w, "weight", lambda: w), b, relu=True)
    _assert_float32_close(got, torch.relu(_reference(x, w, b)))
    assert (got >= 0).all() and (got == 0).any()
