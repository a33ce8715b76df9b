"""The ERF of compute_erf against the protocol written out with plain autograd, with the
fast paths of frozen models on and off (HPX_ANALYSIS_FAST)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import hpx_analysis.erf.compute as erf_compute
from hpx_analysis.erf import compute_erf
from hpx_analysis.models.fast import fast_paths, set_enabled

from .helpers.fast_switch import FAST_IDS, FAST_MODES


def plain_autograd_erf(model: torch.nn.Module, xs: torch.Tensor) -> np.ndarray:
    """Luo et al./RepLKNet, one image at a time: relu of the centre vector of the last
    feature map, summed over channels; relu of its input gradient, summed over colours;
    mean over images (float64)."""
    total = np.zeros(xs.shape[-2:])
    for x in xs:
        x = x[None].clone().requires_grad_(True)
        f = model.forward_features(x)
        h, w = f.shape[-2:]
        (grad,) = torch.autograd.grad(torch.relu(f[0, :, h // 2, w // 2]).sum(), x)
        total += torch.relu(grad[0]).sum(0).double().numpy()
    return total / len(xs)


@pytest.fixture
def fast_switch():
    def switch(on: bool) -> None:
        set_enabled(on)

    yield switch
    set_enabled(None)


@pytest.mark.parametrize("fast", FAST_MODES, ids=FAST_IDS)
@pytest.mark.parametrize("kind", ["hpx", "hb"])
def test_erf_equals_plain_autograd(make_s4, fast_switch, monkeypatch, kind, fast):
    model = make_s4(kind)
    torch.manual_seed(1)
    xs = torch.randn(2, 3, 64, 64)
    reference = plain_autograd_erf(model, xs)  # the plain modules, parameters requiring grad
    fast_switch(fast)
    swapped = []

    @contextlib.contextmanager
    def recorded(m):
        with fast_paths(m) as n:
            swapped.append(n)
            yield n

    monkeypatch.setattr(erf_compute, "fast_paths", recorded)
    matrix = compute_erf(model, list(xs)).matrix
    assert swapped and (swapped[0] > 0) == fast
    assert reference.max() > 0
    np.testing.assert_allclose(matrix, reference, rtol=1e-4, atol=2e-5 * reference.max())
    assert all(p.requires_grad for p in model.parameters())  # left as found
