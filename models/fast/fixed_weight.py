"""Autograd functions for layers whose weights act as constants (eval mode, frozen).

An analysis that asks for gradients w.r.t. the input only (an ERF) needs neither the weight
gradients nor the activations autograd keeps for them. These functions compute the same
values as the plain layers and an input gradient that keeps as little as possible; some
use oneDNN products with reordered weights (:mod:`.packed_linear`). Two of them
(:func:`star_relu`, :func:`split_channels`) are exact for trainable inputs too and only
keep less or copy less.
"""

from __future__ import annotations

import functools
import platform

import torch
import torch.nn.functional as F
from torch import nn

from . import packed_linear

__all__ = [
    "weights_fixed",
    "channel_linear",
    "fixed_linear",
    "fixed_depthwise_conv2d",
    "split_channels",
    "star_relu",
    "fixed_star_mlp",
]


def weights_fixed(module: nn.Module) -> bool:
    """Whether ``module``'s parameters act as constants now: eval mode, and no gradient can
    reach them (grad mode off, or none requires grad). The fixed-weight paths run only then."""
    if module.training:
        return False
    return not torch.is_grad_enabled() or not any(p.requires_grad for p in module.parameters())


_ONEDNN_GEMM = torch.backends.mkldnn.is_available() and platform.machine().lower() in ("x86_64", "amd64")
_ONEDNN_MIN_ROWS = 256


def channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` over the last axis of ``x (..., c_in)``; on x86 CPUs computed as a oneDNN
    1x1 convolution over a channels-last view of the rows, where ``F.linear`` calls MKL's
    sgemm: 0.9-1.9x as fast for this model's shapes on the 2-core AMD EPYC this project is
    developed on (``benchmarks/gemm_backends.py``). Elsewhere (other devices, dtypes or
    platforms, non-contiguous inputs or few rows) it is ``F.linear``. The products of
    constant weights where :mod:`.packed_linear` does not apply."""
    rows = x.numel() // max(x.shape[-1], 1)
    if (
        _ONEDNN_GEMM
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.is_contiguous()
        and rows >= _ONEDNN_MIN_ROWS
    ):
        c_in, c_out = x.shape[-1], weight.shape[0]
        y = F.conv2d(x.view(1, 1, rows, c_in).permute(0, 3, 1, 2), weight[:, :, None, None], bias)
        return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], c_out)
    return F.linear(x, weight, bias)


def _fixed_product(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, owner: torch.Tensor
) -> torch.Tensor:
    """``x @ weight.T + bias`` for a constant weight (``owner`` or a view of it)."""
    if packed_linear.applies(x):
        return packed_linear.linear(
            x, packed_linear.packed_weight(owner, f"weight{tuple(weight.shape)}", lambda: weight), bias
        )
    return channel_linear(x, weight, bias)


class _FixedLinear(torch.autograd.Function):
    """A linear layer with a constant weight: the backward computes only the input gradient
    (``grad @ W``), so only the weight is kept, not the input. Float32 CPU products use the
    weight, and its transpose, reordered once for oneDNN, cached under ``owner``."""

    @staticmethod
    def forward(ctx, x, weight, bias, owner):
        ctx.save_for_backward(weight)
        ctx.owner = owner
        return _fixed_product(x, weight, bias, owner)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        grad = grad.contiguous()
        if packed_linear.applies(grad):
            w_t = packed_linear.packed_weight(ctx.owner, f"transposed{tuple(weight.shape)}", weight.t)
            return packed_linear.linear(grad, w_t), None, None, None
        # in the gradient's dtype: autocast may have run the forward in half precision
        return channel_linear(grad, weight.t().to(grad.dtype).contiguous()), None, None, None


def fixed_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, owner: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a weight and bias that act as constants: the same
    result, a gradient for ``x`` only, no saved input. ``owner`` is the parameter that
    ``weight`` is (the default) or is a view of, under which its reordered copies are kept."""
    owner = weight if owner is None else owner
    if torch.is_grad_enabled() and x.requires_grad:
        return _FixedLinear.apply(x, weight, bias, owner)
    return _fixed_product(x, weight, bias, owner)


class _FixedDepthwiseConv2d(torch.autograd.Function):
    """Depthwise stride-1 convolution with fixed weights and "same" padding; gradient w.r.t.
    the input only. That gradient is the transposed convolution, which for an odd kernel with
    padding ``k // 2`` is the same depthwise convolution with the kernel flipped: one
    forward-type conv, and nothing is kept (autograd's convolution backward keeps the input:
    0.39 GB of hpx_former_s18's saved activations at 1024 px)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.weight, ctx.padding = weight, padding
        return F.conv2d(x, weight, bias, padding=padding, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        # in the gradient's layout as it comes (a layout conversion costs more than the conv)
        w = ctx.weight.flip(-2, -1).to(grad.dtype)  # autocast may have run the forward in half precision
        return F.conv2d(grad, w, None, padding=ctx.padding, groups=w.shape[0]), None, None, None


def fixed_depthwise_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding, groups=C)`` for a constant odd-sized
    depthwise kernel with "same" padding, with the flipped-kernel input gradient."""
    return _FixedDepthwiseConv2d.apply(x, weight, bias, padding)


class _SplitChannels(torch.autograd.Function):
    """``x.split(size, dim=1)`` whose backward writes the gradients of the pieces into one
    tensor laid out like ``x``. Autograd's split backward concatenates them into a contiguous
    tensor: for a channels-last ``x`` a transposing copy, and the layers before the split then
    transpose back (H_b's token sequences: 52 ms of 157 ms in a first-stage mixer of
    hb_former_s18 at 1024 px, forward and backward)."""

    @staticmethod
    def forward(ctx, x, size: int):
        ctx.shape, ctx.dtype, ctx.device = x.shape, x.dtype, x.device
        ctx.order = sorted(range(x.ndim), key=lambda d: -x.stride(d))  # x's dims, outermost first
        return x.split(size, dim=1)

    @staticmethod
    def backward(ctx, *grads):
        order = ctx.order
        grad = torch.empty([ctx.shape[d] for d in order], dtype=ctx.dtype, device=ctx.device)
        grad = grad.permute(sorted(range(len(order)), key=order.__getitem__))  # back to x's dim order
        start = 0
        for piece in grads:  # unused pieces arrive as zeros (materialized by autograd)
            grad[:, start : start + piece.shape[1]].copy_(piece)
            start += piece.shape[1]
        return grad, None


def split_channels(x: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """``x.split(size, dim=1)``, with the gradient of ``x`` assembled in ``x``'s memory layout."""
    return _SplitChannels.apply(x, size)


class _StarReLUFunction(torch.autograd.Function):
    """``scale * relu(x)**2 + bias`` with a backward that keeps only ``relu(x)`` (autograd's
    version stores the square and goes through ``pow``'s backward)."""

    @staticmethod
    def forward(ctx, x, scale, bias):
        r = F.relu(x)
        ctx.save_for_backward(r, scale)
        return torch.addcmul(bias, r * r, scale)

    @staticmethod
    def backward(ctx, grad):
        r, scale = ctx.saved_tensors
        grad_x = grad_scale = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * r * (2 * scale)
        if ctx.needs_input_grad[1]:
            grad_scale = (grad * r * r).sum().reshape(scale.shape)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum().reshape(scale.shape)
        return grad_x, grad_scale, grad_bias


def star_relu(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``scale * relu(x)**2 + bias``, differentiable in all three, keeping only ``relu(x)``."""
    return _StarReLUFunction.apply(x, scale, bias)


def _joined(blocks: list[torch.Tensor]) -> torch.Tensor:
    """The row blocks as one tensor; a single block as it is (``torch.cat`` would copy it)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _packed_product(rows: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor, relu: bool) -> torch.Tensor:
    return packed_linear.linear(rows, packed, bias, relu=relu)


def _plain_product(rows: torch.Tensor, bias: torch.Tensor | None, weight: torch.Tensor, relu: bool) -> torch.Tensor:
    y = channel_linear(rows, weight, bias)
    return y.clamp_min_(0) if relu else y


def _mlp_products(x: torch.Tensor, *weights, recipes: tuple[str, ...] = ("weight", "star"), relu_first: bool = False):
    """One product function ``f(rows, bias)`` per ``(owner, build[, depends])`` in ``weights``:
    with the reordered weight for float32 CPU inputs (see :mod:`.packed_linear`), else
    :func:`channel_linear` with ``build()`` in ``x``'s dtype. With ``relu_first`` the first
    function returns the ReLU of its product (oneDNN's post-op where it runs: bit-identical,
    about 10 ms per 1024 px image)."""
    funcs = []
    for i, (recipe, (owner, build, *depends)) in enumerate(zip(recipes, weights)):
        relu = relu_first and i == 0
        if packed_linear.applies(x):
            packed = packed_linear.packed_weight(owner, recipe, build, tuple(depends))
            funcs.append(functools.partial(_packed_product, packed=packed, relu=relu))
        else:
            funcs.append(functools.partial(_plain_product, weight=build().to(x.dtype).contiguous(), relu=relu))
    return funcs


class _FixedWeightStarMlp(torch.autograd.Function):
    """``fc2(StarReLU(fc1(x)))`` for fixed weights, computed a block of tokens at a time so
    that the hidden activations (4x the input) stay in cache; gradient w.r.t. ``x`` only.

    The forward keeps ``relu(fc1 x)`` (all the backward needs) block by block. StarReLU's
    scale and bias are folded into fc2 (``(scale W2) h**2 + bias W2 1``), and the backward's
    ``2 scale`` into the transposed weight, which saves two passes over the hidden
    activations; the result equals the module path up to float32 rounding.
    """

    @staticmethod
    def forward(ctx, x, w1, w2, scale, bias, block_rows: int):
        out_bias = bias * w2.sum(1)
        tokens = x.reshape(-1, x.shape[-1]).contiguous()
        fc1, fc2 = _mlp_products(tokens, (w1, lambda: w1), (w2, lambda: w2 * scale, scale), relu_first=True)
        kept, outs = [], []
        for start in range(0, tokens.shape[0], block_rows):
            h = fc1(tokens[start : start + block_rows], None)  # relu(fc1 x)
            outs.append(fc2(h * h, out_bias))
            if ctx.needs_input_grad[0]:
                kept.append(h)
        ctx.owners, ctx.in_shape = (w1, w2, scale), x.shape
        ctx.save_for_backward(w1, w2, scale, *kept)  # saved tensors: checkpointing can drop them
        return _joined(outs).reshape(*x.shape[:-1], w2.shape[0])

    @staticmethod
    def backward(ctx, grad):
        w1, w2, scale, *kept = ctx.saved_tensors
        p1, p2, p_scale = ctx.owners
        # d/dh of (scale * W2) h**2 is 2 * scale * W2 diag(h): the factor goes into the weight
        g = grad.reshape(-1, grad.shape[-1]).contiguous()
        # products in the gradient's dtype: under autocast the forward ran them in half precision
        fc2_t, fc1_t = _mlp_products(
            g, (p2, lambda: (w2 * (2 * scale)).t(), p_scale), (p1, w1.t), recipes=("star_transposed", "transposed")
        )
        grads, start = [], 0
        for h in kept:
            gh = fc2_t(g[start : start + h.shape[0]], None)
            grads.append(fc1_t(gh.mul_(h), None))
            start += h.shape[0]
        return _joined(grads).reshape(ctx.in_shape), None, None, None, None, None


def fixed_star_mlp(
    x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, block_rows: int
) -> torch.Tensor:
    """``F.linear(scale * relu(F.linear(x, w1))**2 + bias, w2)`` for constant weights, in
    blocks of ``block_rows`` tokens, with an input gradient that keeps ``relu(fc1 x)`` only."""
    return _FixedWeightStarMlp.apply(x, w1, w2, scale, bias, block_rows)
