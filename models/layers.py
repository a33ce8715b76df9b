"""Small building blocks of the MetaFormer backbone (channels-last tensors, (B, H, W, C))."""
from __future__ import annotations

import functools
import platform

import torch
import torch.nn.functional as F
from torch import nn

from . import packed_linear, strided_conv

__all__ = [
    "LayerNormNoBias",
    "StarReLU",
    "SquaredReLU",
    "Scale",
    "Sin",
    "Mlp",
    "ChannelLinear",
    "channel_linear",
    "fixed_channel_linear",
    "channel_linear_for",
    "DepthwiseConv2d",
    "DepthwiseConv1d",
    "StemConv2d",
    "split_channels",
    "weights_fixed",
    "MlpHead",
    "Downsampling",
]


class LayerNormNoBias(nn.Module):
    """Layer norm over the last axis with a weight and no bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, None, self.eps)


class _StarReLUFunction(torch.autograd.Function):
    """``scale * relu(x)**2 + bias`` with a hand-written backward that keeps only ``relu(x)``
    (autograd's version stores the square and goes through ``pow``'s backward)."""

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


class StarReLU(nn.Module):
    """``scale * relu(x)**2 + bias`` with learnable scalars."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), scale_value))
        self.bias = nn.Parameter(torch.full((1,), bias_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _StarReLUFunction.apply(x, self.scale, self.bias)


class SquaredReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(F.relu(x))


class Scale(nn.Module):
    """Per-channel scaling (MetaFormer's res scale)."""

    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Sin(nn.Module):
    """``sin(freq * x)`` with a learnable frequency per channel; ``shape`` is the
    broadcast shape of ``freq`` (``(1, C)`` for token-major, ``(1, C, 1, 1)`` for maps)."""

    def __init__(self, shape: tuple[int, ...], init_value: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full(shape, init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


def weights_fixed(module: nn.Module) -> bool:
    """Whether ``module``'s parameters act as constants now: eval mode, and no gradient can
    reach them (grad mode off, or none requires grad). The fixed-weight fast paths (cached
    kernel spectra, the blocked MLP) run only then."""
    if module.training:
        return False
    return not torch.is_grad_enabled() or not any(p.requires_grad for p in module.parameters())


def _onednn_gemm_available() -> bool:
    return torch.backends.mkldnn.is_available() and platform.machine().lower() in ("x86_64", "amd64")


_ONEDNN_GEMM = _onednn_gemm_available()


_ONEDNN_MIN_ROWS = 256


def channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` over the last axis of ``x (..., c_in)``, routed to oneDNN on x86 CPUs.

    There it runs as a 1x1 convolution over a channels-last view of the rows, which uses
    oneDNN's kernels where ``F.linear`` calls MKL's sgemm; on the 2-core AMD EPYC this
    project is developed on, that is 0.9-1.9x as fast for this model's shapes, faster on all
    but the smallest (``benchmarks/gemm_backends.py`` prints both; constant weights take the
    faster path of :mod:`.packed_linear`). Same result up to rounding,
    differentiable in every argument. Elsewhere (other devices, dtypes or
    platforms, non-contiguous or few rows) it is ``F.linear``.
    """
    rows = x.numel() // max(x.shape[-1], 1)
    if (_ONEDNN_GEMM and x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
            and rows >= _ONEDNN_MIN_ROWS):
        c_in, c_out = x.shape[-1], weight.shape[0]
        y = F.conv2d(x.view(1, 1, rows, c_in).permute(0, 3, 1, 2), weight[:, :, None, None], bias)
        return y.permute(0, 2, 3, 1).reshape(*x.shape[:-1], c_out)
    return F.linear(x, weight, bias)


class _FixedChannelLinear(torch.autograd.Function):
    """:func:`channel_linear` with a constant weight: the backward computes only the input
    gradient (``grad @ W``), so only the weight is kept, not the input (autograd's
    convolution and linear backward keep both). Float32 CPU products use the weight, and
    its transpose, reordered once for oneDNN (see :mod:`.packed_linear`), cached under
    ``owner`` (the parameter ``weight`` is, or is a view of)."""

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
        # the product in the gradient's dtype (autocast may have run the forward in half precision)
        return channel_linear(grad, weight.t().to(grad.dtype).contiguous()), None, None, None


def _fixed_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   owner: torch.Tensor) -> torch.Tensor:
    """``channel_linear(x, weight, bias)`` for a constant weight (a view of ``owner``)."""
    if packed_linear.applies(x):
        return packed_linear.linear(x, packed_linear.packed_weight(owner, f"weight{tuple(weight.shape)}",
                                                                   lambda: weight), bias)
    return channel_linear(x, weight, bias)


def fixed_channel_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                         owner: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`channel_linear` for a weight and bias that act as constants (see
    :func:`weights_fixed`): the same result, a gradient for ``x`` only, no saved input.
    ``owner`` is the parameter that ``weight`` is (the default) or is a view of, under which
    its reordered copies are cached."""
    owner = weight if owner is None else owner
    if torch.is_grad_enabled() and x.requires_grad:
        return _FixedChannelLinear.apply(x, weight, bias, owner)
    return _fixed_product(x, weight, bias, owner)


def channel_linear_for(module: nn.Module):
    """The channel linear function ``f(x, weight, bias)`` for ``module``'s weight (or a view
    of it): :func:`fixed_channel_linear` when its weights are fixed (see
    :func:`weights_fixed`), else :func:`channel_linear`."""
    if weights_fixed(module):
        return functools.partial(fixed_channel_linear, owner=module.weight)
    return channel_linear


class ChannelLinear(nn.Linear):
    """``nn.Linear`` over channels-last features, computed by :func:`channel_linear_for`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_linear_for(self)(x, self.weight, self.bias)


class _FixedDepthwiseConv2d(torch.autograd.Function):
    """Depthwise stride-1 convolution with fixed weights and "same" padding; gradient
    w.r.t. the input only. That gradient is the transposed convolution, which for an odd
    kernel with padding ``k // 2`` is the same depthwise convolution with the kernel flipped:
    one forward-type conv, and nothing is kept for the backward (autograd's convolution
    backward keeps the input: 0.39 GB of hpx_former_s18's saved activations at 1024 px)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.weight, ctx.padding = weight, padding
        return F.conv2d(x, weight, bias, padding=padding, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        # in the gradient's layout as it comes (a layout conversion costs more than the conv)
        w = ctx.weight.flip(-2, -1).to(grad.dtype)  # autocast may have run the forward in half precision
        return F.conv2d(grad, w, None, padding=ctx.padding, groups=w.shape[0]), None, None, None


def _fixed_depthwise(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv``'s input gradient goes through :class:`_FixedDepthwiseConv2d`."""
    return weights_fixed(conv) and torch.is_grad_enabled() and x.dtype == conv.weight.dtype


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)`` (odd kernel,
    stride 1, same size out). With fixed weights (see :func:`weights_fixed`) its input
    gradient runs through :class:`_FixedDepthwiseConv2d`; the parameters and state dict are
    those of the ``nn.Conv2d``."""

    def __init__(self, dim: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv2d needs an odd kernel size, got {kernel_size}")
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fixed_depthwise(self, x):
            return _FixedDepthwiseConv2d.apply(x, self.weight, self.bias, self.padding)
        return super().forward(x)


class DepthwiseConv1d(nn.Conv1d):
    """``nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)`` (odd kernel,
    stride 1) on ``x (B, C, L)``, computed as a ``1 x k`` 2D convolution of the
    ``(B, C, 1, L)`` view. For token sequences stored channels-last (``x`` the transpose of
    a ``(B, L, C)`` tensor) oneDNN's 2D depthwise kernels then work on the memory as it is;
    ``conv1d`` converted it and took 6x as long here (first stage of hb_former_s18 at 1024 px:
    100 ms to 17 ms forward and backward). Fixed weights take the flipped-kernel input
    gradient of :class:`_FixedDepthwiseConv2d`, which keeps no activation. Parameters and
    state dict are those of the ``nn.Conv1d``."""

    def __init__(self, dim: int, kernel_size: int, bias: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"DepthwiseConv1d needs an odd kernel size, got {kernel_size}")
        super().__init__(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, padding, x2d = self.weight.unsqueeze(2), (0, self.padding[0]), x.unsqueeze(2)
        if _fixed_depthwise(self, x):
            return _FixedDepthwiseConv2d.apply(x2d, weight, self.bias, padding).squeeze(2)
        return F.conv2d(x2d, weight, self.bias, padding=padding, groups=self.groups).squeeze(2)


class _SplitChannels(torch.autograd.Function):
    """``x.split(size, dim=1)`` whose backward writes the gradients of the pieces into one
    tensor laid out like ``x``. Autograd's split backward concatenates them into a
    contiguous tensor: for a channels-last ``x`` that is a transposing copy, and the layers
    before the split then transpose back (H_b's token sequences: 52 ms of 157 ms in a
    first-stage mixer of hb_former_s18 at 1024 px, forward and backward)."""

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
            grad[:, start:start + piece.shape[1]].copy_(piece)
            start += piece.shape[1]
        return grad, None


def split_channels(x: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """``x.split(size, dim=1)``, with the gradient of ``x`` assembled in ``x``'s memory layout."""
    return _SplitChannels.apply(x, size)


def _joined(blocks: list[torch.Tensor]) -> torch.Tensor:
    """The row blocks as one tensor; a single block as it is (``torch.cat`` would copy it:
    on a GPU the MLP runs as one block)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def _mlp_products(x: torch.Tensor, *weights, recipes: tuple[str, ...] = ("weight", "star"),
                  relu_first: bool = False):
    """One product function ``f(rows, bias)`` per ``(owner, build[, depends])`` in ``weights``:
    with the reordered weight for float32 CPU inputs (see :mod:`.packed_linear`), else
    :func:`channel_linear` with ``build()`` in ``x``'s dtype. With ``relu_first`` the first
    function returns the ReLU of its product (fused into the product where oneDNN runs it)."""
    funcs = []
    for i, (recipe, (owner, build, *depends)) in enumerate(zip(recipes, weights)):
        relu = relu_first and i == 0
        if packed_linear.applies(x):
            packed = packed_linear.packed_weight(owner, recipe, build, tuple(depends))
            funcs.append(functools.partial(_packed_product, packed=packed, relu=relu))
        else:
            funcs.append(functools.partial(_plain_product, weight=build().to(x.dtype).contiguous(), relu=relu))
    return funcs


def _packed_product(rows: torch.Tensor, bias: torch.Tensor | None, packed: torch.Tensor,
                    relu: bool) -> torch.Tensor:
    return packed_linear.linear(rows, packed, bias, relu=relu)


def _plain_product(rows: torch.Tensor, bias: torch.Tensor | None, weight: torch.Tensor, relu: bool) -> torch.Tensor:
    y = channel_linear(rows, weight, bias)
    return y.clamp_min_(0) if relu else y


class _FixedWeightStarMlp(torch.autograd.Function):
    """``fc2(StarReLU(fc1(x)))`` for fixed weights, computed a block of tokens at a time so
    that the hidden activations (4x the input) stay in cache; gradient w.r.t. ``x`` only.

    The forward keeps ``relu(fc1 x)`` (all the backward needs) block by block; every other
    hidden-size intermediate lives for one block. StarReLU's scale and bias are folded into
    fc2 (``(scale W2) h**2 + bias W2 1``), and the backward's ``2 scale`` into the
    transposed weight, which saves two passes over the hidden activations; the result
    equals the module path up to float32 rounding.
    """

    @staticmethod
    def forward(ctx, x, w1, w2, scale, bias, block_rows: int):
        # fc2(scale * h**2 + bias) = (scale * W2) h**2 + bias * W2 1: the StarReLU scalars are
        # folded into fc2's weight and a constant output bias, one pass less per block
        out_bias = bias * w2.sum(1)
        tokens = x.reshape(-1, x.shape[-1]).contiguous()
        fc1, fc2 = _mlp_products(tokens, (w1, lambda: w1), (w2, lambda: w2 * scale, scale), relu_first=True)
        kept, outs = [], []
        for start in range(0, tokens.shape[0], block_rows):
            h = fc1(tokens[start:start + block_rows], None)  # relu(fc1 x)
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
        fc2_t, fc1_t = _mlp_products(g, (p2, lambda: (w2 * (2 * scale)).t(), p_scale), (p1, w1.t),
                                     recipes=("star_transposed", "transposed"))
        grads, start = [], 0
        for h in kept:
            gh = fc2_t(g[start:start + h.shape[0]], None)
            grads.append(fc1_t(gh.mul_(h), None))
            start += h.shape[0]
        return _joined(grads).reshape(ctx.in_shape), None, None, None, None, None


class Mlp(nn.Module):
    """MetaFormer channel MLP: fc1 (C -> rC) -> StarReLU -> fc2, no biases.

    With fixed weights (eval mode, no parameter requiring grad), the fused
    :class:`_FixedWeightStarMlp` path runs instead of the three modules (same result): on
    the CPU it works through ``cpu_block_rows`` tokens at a time.
    """

    cpu_block_rows = 2048

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = ChannelLinear(dim, hidden, bias=False)
        self.act = StarReLU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = ChannelLinear(hidden, dim, bias=False)
        self.drop2 = nn.Dropout(drop)

    def _weights_fixed(self) -> bool:
        return isinstance(self.act, StarReLU) and weights_fixed(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._weights_fixed() and x.dtype == self.fc1.weight.dtype:
            n = x.numel() // x.shape[-1]
            rows = self.cpu_block_rows if x.device.type == "cpu" else n
            return _FixedWeightStarMlp.apply(x, self.fc1.weight, self.fc2.weight, self.act.scale, self.act.bias,
                                             rows)
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class MlpHead(nn.Module):
    """Classifier head: fc1 (C -> 4C) -> SquaredReLU -> LayerNorm -> dropout -> fc2."""

    def __init__(self, dim: int, num_classes: int = 1000, mlp_ratio: float = 4.0, head_dropout: float = 0.0):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = SquaredReLU()
        self.norm = nn.LayerNorm(hidden)
        self.head_dropout = nn.Dropout(head_dropout)
        self.fc2 = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_dropout(self.norm(self.act(self.fc1(x))))
        return x if pre_logits else self.fc2(x)


class StemConv2d(nn.Conv2d):
    """``nn.Conv2d`` for a network's stem. With fixed weights (see :func:`weights_fixed`) on
    the CPU, its input gradient (the gradient w.r.t. the image, what an ERF reads) runs as
    one stride-1 convolution of the phases plus a pixel shuffle (:mod:`.strided_conv`):
    oneDNN's own backward-data kernel is slow with 3 output channels. Parameters and state
    dict are those of the ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and torch.is_grad_enabled() and x.requires_grad
                and x.dtype == self.weight.dtype and strided_conv.supported(self) and weights_fixed(self)):
            return strided_conv.fixed_strided_conv2d(x, self)
        return super().forward(x)


class Downsampling(nn.Module):
    """Stem or between-stage down-sampling conv; input and output are channels-last
    (the stem takes the (B, 3, H, W) image).

    The published down-sampling norms write the layer norm out (mean, biased variance,
    square root); ``F.layer_norm`` computes the same normalisation and differs only in
    rounding. The conv runs on a channels-last input so that its output, permuted to
    (B, H, W, C), is contiguous: every norm, linear layer and residual sum of the stage
    that follows then works on contiguous tensors instead of copying.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int,
                 pre_norm: bool = False, post_norm: bool = False):
        super().__init__()
        self.is_stem = not pre_norm
        self.pre_norm = LayerNormNoBias(in_chs, eps=1e-6) if pre_norm else nn.Identity()
        conv = StemConv2d if self.is_stem else nn.Conv2d
        self.conv = conv(in_chs, out_chs, kernel_size, stride=stride, padding=padding)
        self.post_norm = LayerNormNoBias(out_chs, eps=1e-6) if post_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        x = x.contiguous(memory_format=torch.channels_last) if self.is_stem else x.permute(0, 3, 1, 2)
        x = self.conv(x).permute(0, 2, 3, 1)
        return self.post_norm(x)
