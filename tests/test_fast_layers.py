"""The fixed-weight layers of hpx_analysis.models.fast against plain PyTorch (autograd in float64
where the path allows it)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpx_analysis.models.fast import fast_paths, set_enabled
from hpx_analysis.models.fast.fixed_weight import channel_linear, fixed_linear, split_channels, star_relu
from hpx_analysis.models.fast.modules import FastDepthwiseConv1d, FastLinear, FastMlp
from hpx_analysis.models.layers import DepthwiseConv1d, DepthwiseConv2d, Mlp, StarReLU


@pytest.fixture(autouse=True)
def fast_on():
    set_enabled(True)  # these tests are about the fast classes, whatever HPX_ANALYSIS_FAST says
    yield
    set_enabled(None)


def _grad_fn_names(y: torch.Tensor) -> str:
    """The names of the autograd nodes up to two steps behind ``y``."""
    node = y.grad_fn
    names = [type(node).__name__]
    names += [type(n).__name__ for n, _ in node.next_functions if n is not None]
    return " ".join(names)


@pytest.mark.parametrize("shape", [(2, 9, 31, 24), (1, 300, 24), (5, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_channel_linear_equals_f_linear_with_gradients(shape, with_bias):
    # (2, 9, 31, 24) has 558 rows (the oneDNN route on x86), (5, 24) few rows (F.linear)
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(40, 24, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True) if with_bias else None
    out_grad = torch.randn(*shape[:-1], 40, generator=g)
    params = [x, w] + ([b] if with_bias else [])
    grads = torch.autograd.grad(channel_linear(x, w, b), params, out_grad)
    grads_ref = torch.autograd.grad(F.linear(x, w, b), params, out_grad)
    torch.testing.assert_close(channel_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    for got, ref in zip(grads, grads_ref):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def _mlp(dim=24, seed=0):
    torch.manual_seed(seed)
    mlp = Mlp(dim)
    with torch.no_grad():  # non-trivial StarReLU scalars
        mlp.act.scale.fill_(0.7)
        mlp.act.bias.fill_(-0.2)
    return mlp


@pytest.mark.parametrize("block_rows", [7, 64, 10**6])
def test_fixed_weight_mlp_equals_the_plain_mlp(block_rows, monkeypatch):
    mlp = _mlp().eval().requires_grad_(False)
    monkeypatch.setattr(FastMlp, "cpu_block_rows", block_rows)  # 7: many blocks, a ragged last one
    x = torch.randn(2, 5, 9, 24)
    out_grad = torch.randn(2, 5, 9, 24)
    xb = x.clone().requires_grad_(True)
    y_ref = mlp(xb)
    y_ref.backward(out_grad)
    xa = x.clone().requires_grad_(True)
    with fast_paths(mlp) as n:
        assert n == 4 and type(mlp) is FastMlp  # the MLP, its two linear layers, its StarReLU
        y = mlp(xa)
        assert "FixedWeightStarMlp" in type(y.grad_fn).__name__
        y.backward(out_grad)
        with torch.no_grad():
            torch.testing.assert_close(mlp(x), y_ref.detach(), rtol=1e-5, atol=1e-5)
    assert type(mlp) is Mlp
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)


def test_mlp_with_trainable_weights_takes_the_plain_path():
    mlp = _mlp().eval()  # parameters require grad: weight gradients must flow
    x = torch.randn(3, 4, 24)
    with fast_paths(mlp):
        y = mlp(x)
        y.sum().backward()
        assert all(p.grad is not None for p in mlp.parameters())
        mlp.requires_grad_(False).train()  # training mode: dropout applies, modules again
        assert "FixedWeightStarMlp" not in type(mlp(x.requires_grad_(True)).grad_fn).__name__


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("kernel_size,with_bias", [(5, True), (7, False), (3, True)])
def test_fixed_depthwise_conv_gradient_is_the_transposed_convolution(channels_last, kernel_size, with_bias):
    # reference: autograd through F.conv2d in float64 (its input gradient is conv_transpose2d)
    torch.manual_seed(kernel_size)
    conv = DepthwiseConv2d(6, kernel_size, bias=with_bias).double().eval().requires_grad_(False)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64)
    out_grad = torch.randn(2, 6, 11, 9, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        out_grad = out_grad.contiguous(memory_format=torch.channels_last)
    xa = x.clone().requires_grad_(True)
    with fast_paths(conv):
        y = conv(xa)
    assert "FixedDepthwiseConv2d" in type(y.grad_fn).__name__
    (grad,) = torch.autograd.grad(y, xa, out_grad)
    xb = x.clone().requires_grad_(True)
    y_ref = F.conv2d(xb, conv.weight, conv.bias, padding=kernel_size // 2, groups=6)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("token_major", [True, False])
def test_fixed_depthwise_conv1d_input_gradient_equals_conv1d(token_major):
    torch.manual_seed(int(token_major))
    conv = DepthwiseConv1d(6, 3).double().eval().requires_grad_(False)
    conv.__class__ = FastDepthwiseConv1d
    x = (
        torch.randn(2, 17, 6, dtype=torch.float64).transpose(1, 2)
        if token_major
        else torch.randn(2, 6, 17, dtype=torch.float64)
    )
    out_grad = torch.randn(2, 6, 17, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    y = conv(xa)
    assert "FixedDepthwiseConv2d" in _grad_fn_names(y)
    (grad,) = torch.autograd.grad(y, xa, out_grad)
    xb = x.clone().requires_grad_(True)
    y_ref = F.conv1d(xb, conv.weight, conv.bias, padding=1, groups=6)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 9, 31, 24), (5, 24)])
def test_fixed_linear_input_gradient_without_saving_the_input(shape):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    w, b = torch.randn(40, 24, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    out_grad = torch.randn(*shape[:-1], 40, generator=g, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    y = fixed_linear(xa, w, b)
    saved = y.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].shape == w.shape  # the weight only
    (grad,) = torch.autograd.grad(y, xa, out_grad)
    xb = x.clone().requires_grad_(True)
    y_ref = F.linear(xb, w, b)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


def test_fast_linear_takes_the_fixed_path_only_with_fixed_weights():
    lin = nn.Linear(24, 8)
    x = torch.randn(3, 24, requires_grad=True)
    with fast_paths(lin):
        assert type(lin) is FastLinear
        assert "FixedLinear" not in type(lin(x).grad_fn).__name__  # trainable: weight grads flow
        lin.eval().requires_grad_(False)
        assert "FixedLinear" in type(lin(x).grad_fn).__name__


@pytest.mark.parametrize(
    "make_module,make_input",
    [
        (lambda: nn.Linear(24, 40), lambda: torch.randn(2, 9, 31, 24)),
        (lambda: DepthwiseConv2d(6, 5), lambda: torch.randn(2, 6, 11, 9).contiguous(memory_format=torch.channels_last)),
        (lambda: _mlp(), lambda: torch.randn(2, 5, 9, 24)),
    ],
    ids=["linear", "depthwise_conv", "mlp"],
)
def test_fixed_weight_paths_backward_after_an_autocast_forward(make_module, make_input):
    # on CUDA the backward runs outside the forward's autocast region: the hand-written
    # backward passes must accept half-precision gradients next to float32 weights
    torch.manual_seed(0)
    module = make_module().eval().requires_grad_(False)
    x = make_input()
    xb = x.clone().requires_grad_(True)
    y_ref = module(xb)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1)))
    xa = x.clone().requires_grad_(True)
    with fast_paths(module):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(xa)
        (grad,) = torch.autograd.grad(
            y, xa, torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.dtype)
        )
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    assert (grad - grad_ref).abs().sum() / grad_ref.abs().sum() < 0.05  # bfloat16 rounding only


@pytest.mark.parametrize("layout", ["contiguous", "token_major", "channels_last"])
def test_split_channels_gradient_in_the_input_layout(layout):
    g = torch.Generator().manual_seed(5)
    if layout == "contiguous":
        x = torch.randn(2, 9, 13, generator=g, dtype=torch.float64)
    elif layout == "token_major":  # H_b: (B, C, L) view of a (B, L, C) tensor
        x = torch.randn(2, 13, 9, generator=g, dtype=torch.float64).transpose(1, 2)
    else:
        x = torch.randn(2, 9, 5, 4, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    weights = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in x.split(3, dim=1)]
    xa = x.clone().requires_grad_(True)
    pieces = split_channels(xa, 3)
    # the last piece unused: its gradient is zero
    (grad,) = torch.autograd.grad(sum((p * w).sum() for p, w in zip(pieces[:2], weights[:2])), xa)
    xb = x.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad(sum((p * w).sum() for p, w in zip(xb.split(3, dim=1)[:2], weights[:2])), xb)
    for got, ref in zip(pieces, xb.split(3, dim=1)):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=0)
    assert grad.stride() == x.stride()  # laid out like the input, not made contiguous


def test_star_relu_function_matches_the_formula_and_its_gradients():
    act = StarReLU(scale_value=0.8, bias_value=-0.3).double()
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(star_relu(x, act.scale, act.bias), 0.8 * torch.relu(x) ** 2 - 0.3)
    assert torch.autograd.gradcheck(star_relu, (x, act.scale, act.bias))
