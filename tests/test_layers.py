"""The plain building blocks against their definitions (REFERENCE.md) in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpx_analysis.models.layers import DepthwiseConv1d, DepthwiseConv2d, Mlp, PointwiseConv2d, StarReLU


def test_star_relu_is_its_formula():
    act = StarReLU(scale_value=0.8, bias_value=-0.3).double()
    x = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(act(x), 0.8 * torch.relu(x) ** 2 - 0.3)


def test_mlp_is_fc1_star_relu_fc2_with_plain_linear_layers():
    torch.manual_seed(0)
    mlp = Mlp(8).double()
    assert type(mlp.fc1) is nn.Linear and type(mlp.fc2) is nn.Linear and mlp.fc1.bias is None
    assert set(mlp.state_dict()) == {"fc1.weight", "act.scale", "act.bias", "fc2.weight"}
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    h = F.linear(x, mlp.fc1.weight)
    torch.testing.assert_close(mlp(x), F.linear(mlp.act.scale * F.relu(h) ** 2 + mlp.act.bias, mlp.fc2.weight))


def test_pointwise_conv_is_a_1x1_conv_and_keeps_the_channels_last_layout():
    conv = PointwiseConv2d(6, 18).double()
    assert conv.weight.shape == (18, 6, 1, 1)
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64).permute(0, 3, 1, 2)  # a view of channels-last memory
    y = conv(x)
    torch.testing.assert_close(
        y, torch.einsum("bchw,oc->bohw", x, conv.weight[:, :, 0, 0]) + conv.bias[None, :, None, None]
    )
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_depthwise_conv_is_nn_conv2d():
    conv = DepthwiseConv2d(4, 5)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (4, 1, 5, 5)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    y = conv(x)
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, padding=2, groups=4))
    y.sum().backward()
    assert conv.weight.grad is not None and conv.bias.grad is not None
    with pytest.raises(ValueError, match="odd kernel"):
        DepthwiseConv2d(4, 4)


@pytest.mark.parametrize("token_major", [True, False])
def test_depthwise_conv1d_equals_conv1d(token_major):
    # reference: F.conv1d in float64, values and input and weight gradients
    torch.manual_seed(int(token_major))
    conv = DepthwiseConv1d(6, 3).double()
    x = (
        torch.randn(2, 17, 6, dtype=torch.float64).transpose(1, 2)
        if token_major
        else torch.randn(2, 6, 17, dtype=torch.float64)
    )
    out_grad = torch.randn(2, 6, 17, dtype=torch.float64)
    xa = x.clone().requires_grad_(True)
    y = conv(xa)
    grads = torch.autograd.grad(y, [xa, conv.weight, conv.bias], out_grad)
    xb = x.clone().requires_grad_(True)
    w, b = conv.weight.detach().clone().requires_grad_(True), conv.bias.detach().clone().requires_grad_(True)
    y_ref = F.conv1d(xb, w, b, padding=1, groups=6)
    grads_ref = torch.autograd.grad(y_ref, [xb, w, b], out_grad)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, ref in zip(grads, grads_ref):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert set(conv.state_dict()) == {"weight", "bias"} and conv.weight.shape == (6, 1, 3)
