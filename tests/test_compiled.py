"""Regional compilation for the ERF: which blocks are compiled, the model left as found,
the same matrix as without compiling (dynamo and AOTAutograd through the custom autograd
functions; the "aot_eager" backend keeps the test fast: no code generation)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import timm
import torch
from torch import nn

import hpx_analysis  # noqa: F401  (registers the models)
import hpx_analysis.erf.compute as erf_module
from hpx_analysis.erf import compute_erf
from hpx_analysis.execution.compiled import compiling, repeated_blocks


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.pair = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])  # uniform, but inside a block

    def forward(self, x):
        return x + torch.relu(self.conv(x))


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())  # mixed classes: not blocks
        self.stages = nn.ModuleList([nn.Sequential(Block(), Block()), nn.Sequential(Block())])

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


def test_repeated_blocks_are_the_innermost_uniform_children():
    model = Nested()
    found = repeated_blocks(model)
    assert [(container, name) for container, name, _ in found] == [
        (model.stages[0], "0"),
        (model.stages[0], "1"),
        (model.stages[1], "0"),
    ]
    assert all(isinstance(block, Block) for _, _, block in found)
    s4 = timm.create_model("hpx_former_s4")
    kinds = [type(block).__name__ for _, _, block in repeated_blocks(s4)]
    assert kinds == ["Downsampling"] * 4 + ["MetaFormerBlock"] * 4


def test_compiling_swaps_blocks_and_restores_them_after_an_error():
    model = Nested()
    before = [block for _, _, block in repeated_blocks(model)]
    keys = list(model.state_dict())
    with pytest.raises(RuntimeError, match="inside"):
        with compiling(model, backend="eager") as n:
            assert n == 3
            assert all(type(b).__name__ == "OptimizedModule" for b in model.stages[0])
            raise RuntimeError("inside")
    assert [block for _, _, block in repeated_blocks(model)] == before
    assert list(model.state_dict()) == keys


@pytest.mark.slow
def test_compiled_erf_equals_eager_and_leaves_the_model_as_found(monkeypatch):
    monkeypatch.setattr(erf_module, "compiling", functools.partial(compiling, backend="aot_eager"))
    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4").eval()
    flags = [p.requires_grad for p in model.parameters()]
    xs = [torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    eager = compute_erf(model, xs, batch_size=2)
    compiled = compute_erf(model, xs, batch_size=2, compile_blocks=True)
    assert compiled.compiled_blocks == 8 and eager.compiled_blocks == 0
    assert compiled.as_dict()["compiled_blocks"] == 8
    np.testing.assert_allclose(compiled.matrix, eager.matrix, rtol=1e-5, atol=1e-6 * eager.matrix.max())
    assert [type(b).__name__ for b in model.stages[0]] == ["MetaFormerBlock"]
    assert [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.slow
def test_a_blocks_forward_at_is_compiled_too():
    # the ERF's last block enters through forward_at; it must not bypass the compiled wrapper
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch.manual_seed(0)
    model = timm.create_model("hpx_former_s4").eval().requires_grad_(False)
    x = torch.randn(1, 3, 64, 64)
    expected = model.forward_features_at(x)
    torch._dynamo.reset()
    with compiling(model, backend=counting_backend):
        tail = model.stages[-1][-1]
        before = len(graphs)
        got = tail.forward_at(model.downsample_layers[-1](model.forward_to_stage(x, 3)), 1, 1)
        assert len(graphs) > before  # traced by dynamo, not run eagerly
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not hasattr(model.stages[-1][-1], "__wrapped__") and "forward_at" not in vars(model.stages[-1][-1])
