"""The fast paths of the building blocks against their plain PyTorch definitions."""
import pytest
import torch
import torch.nn.functional as F

from hpx_analysis.models.layers import (ChannelLinear, DepthwiseConv1d, DepthwiseConv2d, Mlp, channel_linear,
                                        fixed_channel_linear, split_channels)


@pytest.mark.parametrize("shape", [(2, 9, 31, 24), (1, 300, 24), (5, 24)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_channel_linear_equals_f_linear_with_gradients(shape, with_bias):
    # (2, 9, 31, 24) has 558 rows (the oneDNN route on x86), (5, 24) few rows (F.linear)
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(40, 24, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True) if with_bias else None
    out_grad = torch.randn(*shape[:-1], 40, generator=g)
    y = channel_linear(x, w, b)
    grads = torch.autograd.grad(y, [x, w] + ([b] if with_bias else []), out_grad)
    y_ref = F.linear(x, w, b)
    grads_ref = torch.autograd.grad(y_ref, [x, w] + ([b] if with_bias else []), out_grad)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, ref in zip(grads, grads_ref):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


def test_channel_linear_accepts_non_contiguous_input():
    x = torch.randn(2, 24, 20, 20).permute(0, 2, 3, 1)[:, ::2]  # neither layout
    lin = ChannelLinear(24, 8)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)


def _mlp(dim=24, seed=0):
    torch.manual_seed(seed)
    mlp = Mlp(dim)
    with torch.no_grad():  # non-trivial StarReLU scalars
        mlp.act.scale.fill_(0.7)
        mlp.act.bias.fill_(-0.2)
    return mlp


def _module_path(mlp, x):
    return mlp.fc2(mlp.act(mlp.fc1(x)))


@pytest.mark.parametrize("block_rows", [7, 64, 10 ** 6])
def test_fixed_weight_mlp_equals_module_path(block_rows, monkeypatch):
    mlp = _mlp().eval().requires_grad_(False)
    monkeypatch.setattr(Mlp, "cpu_block_rows", block_rows)  # 7: many blocks, a ragged last one
    x = torch.randn(2, 5, 9, 24, dtype=torch.float64).float()
    out_grad = torch.randn(2, 5, 9, 24)
    xa = x.clone().requires_grad_(True)
    y = mlp(xa)
    assert y.grad_fn is not None and "FixedWeightStarMlp" in type(y.grad_fn).__name__
    y.backward(out_grad)
    xb = x.clone().requires_grad_(True)
    y_ref = _module_path(mlp, xb)
    y_ref.backward(out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), y_ref.detach(), rtol=1e-5, atol=1e-5)


def test_mlp_with_trainable_weights_uses_the_modules():
    mlp = _mlp().eval()  # parameters require grad: weight gradients must flow
    x = torch.randn(3, 4, 24)
    y = mlp(x)
    torch.testing.assert_close(y, _module_path(mlp, x))
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
        x, out_grad = x.contiguous(memory_format=torch.channels_last), out_grad.contiguous(memory_format=torch.channels_last)
    xa = x.clone().requires_grad_(True)
    y = conv(xa)
    assert "FixedDepthwiseConv2d" in type(y.grad_fn).__name__
    (grad,) = torch.autograd.grad(y, xa, out_grad)
    xb = x.clone().requires_grad_(True)
    w = conv.weight.detach().clone().requires_grad_(False)
    y_ref = F.conv2d(xb, w, conv.bias, padding=kernel_size // 2, groups=6)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


def test_depthwise_conv_with_trainable_weights_is_nn_conv2d():
    conv = DepthwiseConv2d(4, 5)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (4, 1, 5, 5)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    y = conv(x)
    assert "FixedDepthwiseConv2d" not in type(y.grad_fn).__name__
    y.sum().backward()
    assert conv.weight.grad is not None and conv.bias.grad is not None
    with pytest.raises(ValueError, match="odd kernel"):
        DepthwiseConv2d(4, 4)


@pytest.mark.parametrize("shape", [(2, 9, 31, 24), (5, 24)])
def test_fixed_channel_linear_input_gradient_without_saving_the_input(shape):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    w, b = torch.randn(40, 24, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    out_grad = torch.randn(*shape[:-1], 40, generator=g, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    y = fixed_channel_linear(xa, w, b)
    saved = y.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].shape == w.shape  # the weight only
    (grad,) = torch.autograd.grad(y, xa, out_grad)
    xb = x.clone().requires_grad_(True)
    y_ref = F.linear(xb, w, b)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-12)


def test_channel_linear_module_takes_the_fixed_path_only_with_fixed_weights():
    lin = ChannelLinear(24, 8)
    x = torch.randn(3, 24, requires_grad=True)
    assert "FixedChannelLinear" not in type(lin(x).grad_fn).__name__  # trainable: weight grads flow
    lin.eval().requires_grad_(False)
    assert "FixedChannelLinear" in type(lin(x).grad_fn).__name__


@pytest.mark.parametrize("make_module,make_input", [
    (lambda: ChannelLinear(24, 40), lambda: torch.randn(2, 9, 31, 24)),
    (lambda: DepthwiseConv2d(6, 5), lambda: torch.randn(2, 6, 11, 9).contiguous(memory_format=torch.channels_last)),
    (lambda: _mlp(), lambda: torch.randn(2, 5, 9, 24)),
], ids=["channel_linear", "depthwise_conv", "mlp"])
def test_fixed_weight_paths_backward_after_an_autocast_forward(make_module, make_input):
    # on CUDA the backward runs outside the forward's autocast region: the hand-written
    # backward passes must accept half-precision gradients next to float32 weights
    torch.manual_seed(0)
    module = make_module().eval().requires_grad_(False)
    x = make_input()
    out_grad_seed = torch.Generator().manual_seed(1)
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(xa)
    (grad,) = torch.autograd.grad(y, xa, torch.randn(y.shape, generator=out_grad_seed).to(y.dtype))
    xb = x.clone().requires_grad_(True)
    y_ref = module(xb)
    (grad_ref,) = torch.autograd.grad(y_ref, xb, torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    assert (grad - grad_ref).abs().sum() / grad_ref.abs().sum() < 0.05  # bfloat16 rounding only


@pytest.mark.parametrize("token_major", [True, False])
@pytest.mark.parametrize("fixed", [True, False])
def test_depthwise_conv1d_equals_conv1d(token_major, fixed):
    # reference: F.conv1d in float64, values and input (and, when trainable, weight) gradients
    torch.manual_seed(int(token_major) + 2 * int(fixed))
    conv = DepthwiseConv1d(6, 3).double()
    if fixed:
        conv.eval().requires_grad_(False)
    x = torch.randn(2, 17, 6, dtype=torch.float64).transpose(1, 2) if token_major else \
        torch.randn(2, 6, 17, dtype=torch.float64)
    out_grad = torch.randn(2, 6, 17, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    y = conv(xa)
    conv_node = y.grad_fn.next_functions[0][0]  # behind the squeeze of the (B, C, 1, L) view
    assert ("FixedDepthwiseConv2d" in type(conv_node).__name__) == fixed
    params = [] if fixed else [conv.weight, conv.bias]
    grads = torch.autograd.grad(y, [xa] + params, out_grad)
    xb = x.clone().requires_grad_(True)
    w, b = (conv.weight.detach().clone().requires_grad_(not fixed), conv.bias.detach().clone().requires_grad_(not fixed))
    y_ref = F.conv1d(xb, w, b, padding=1, groups=6)
    grads_ref = torch.autograd.grad(y_ref, [xb] + ([] if fixed else [w, b]), out_grad)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, ref in zip(grads, grads_ref):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (6, 1, 3)


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
