"""What each known token mixer carries from token ``j`` to token ``i``: the mixer's input
for one image -> a :mod:`.contributions` object.

- H_px and its ablations (:class:`HyenaPixel`, ``HyenaPixelNoNorm``, ``HyenaPixelExplicit``,
  ``HyenaPixelSeparable``): with ``u = norm(q * k)`` and gate ``v``,
  ``z(i, j) = v(i) * K(i - j) * u(j)`` per channel on the 2D grid (the filter's bias skip at
  ``j = i``; the separable ablation's conv biases are signal-independent and go to the
  rest), then the output norm with fixed statistics and the output projection.
- H_b and causal Hyena: the same with the 1D kernel over the raster-flattened tokens
  (``x0`` the gate, ``v * x1`` the signal).
- Self-attention (this package's, timm's MetaFormer and ViT/DeiT attention):
  ``c(i, j) = sum_h alpha_h(i, j) W_O^h W_V^h x_j``.
- SepConv (this package's and timm's ConvFormer): ``c(i, j) = W_2 (w_dw(i - j) * a(j))``
  with ``a = act(W_1 x)``.

Anything else raises :class:`UnknownMixerError` naming the mixer's class.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.mixers import (
    Attention,
    BidirectionalHyena,
    BidirectionalHyenaNorm,
    CausalHyena,
    HyenaPixel,
    HyenaPixelExplicit,
    HyenaPixelNoNorm,
    HyenaPixelSeparable,
    SepConv,
)
from .contributions import AttentionContribution, GatedConvContribution

__all__ = ["UnknownMixerError", "decompose", "mixer_name", "mixer_tokens", "is_known_mixer"]

HYENA_PIXEL = (HyenaPixel, HyenaPixelNoNorm, HyenaPixelExplicit, HyenaPixelSeparable)


class UnknownMixerError(ValueError):
    """A token mixer whose contributions are not defined here (the message names it)."""


def mixer_name(mixer: nn.Module) -> str:
    """The mixer's class name (what the tables and messages call it)."""
    return type(mixer).__name__


def _timm_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """timm's SepConv classes and attention classes (ViT/DeiT and MetaFormer)."""
    from timm.layers import Attention as TimmAttention
    from timm.models.metaformer import Attention as MetaAttention
    from timm.models.metaformer import SepConv as TimmSepConv

    return (TimmSepConv,), (TimmAttention, MetaAttention)


def _unsupported_detail(mixer: nn.Module) -> str | None:
    """Why a mixer of a known class still cannot be decomposed, or None."""
    act2 = getattr(mixer, "act2", None)
    if act2 is not None and not isinstance(act2, nn.Identity):
        return f"{mixer_name(mixer)} with an activation after its depthwise conv is not linear in a(j)"
    if getattr(mixer, "gate", None) is not None:
        return f"{mixer_name(mixer)} with an output gate is not decomposed"
    if not isinstance(getattr(mixer, "norm", nn.Identity()), nn.Identity):
        return f"{mixer_name(mixer)} with a norm on its output is not decomposed"
    return None


def is_known_mixer(mixer: nn.Module) -> tuple[bool, str]:
    """Whether :func:`decompose` handles ``mixer``, and if not why.

    Args:
        mixer: a token mixer module.

    Returns:
        tuple[bool, str]: ``(True, "")`` or ``(False, reason)``.
    """
    sepconvs, attentions = _timm_classes()
    known = HYENA_PIXEL + (BidirectionalHyena, SepConv, Attention) + sepconvs + attentions
    if not isinstance(mixer, known):
        return False, f"unknown token mixer {mixer_name(mixer)} (no contribution definition)"
    detail = _unsupported_detail(mixer)
    return (False, detail) if detail else (True, "")


def mixer_tokens(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The mixer's output for its input ``x`` (batch of one) as ``(N, C)`` tokens in raster
    order (prefix tokens first): the reference the contributions add up to.

    Args:
        mixer: the token mixer.
        x: its input as it receives it (channels-last map, NCHW map or token sequence).

    Returns:
        torch.Tensor: ``(N, C)``.
    """
    y = mixer(x)
    sepconvs, _ = _timm_classes()
    if isinstance(mixer, sepconvs):  # NCHW
        return y[0].flatten(1).T
    return y[0].reshape(-1, y.shape[-1])


def decompose(mixer: nn.Module, x: torch.Tensor, grid: tuple[int, int], prefix: int = 0):
    """The contributions of ``mixer`` for its input ``x``.

    Args:
        mixer: a token mixer (see the module docstring for the known ones).
        x: its input for one image, as the mixer receives it: ``(1, h, w, C)`` for this
            package's mixers, ``(1, C, h, w)`` for timm's SepConv, ``(1, N, C)`` for timm's
            attention.
        grid: ``(h, w)`` token grid.
        prefix: tokens before the grid in a sequence (ViT class and register tokens).

    Returns:
        GatedConvContribution | AttentionContribution: the decomposition.

    Raises:
        UnknownMixerError: the mixer is not one of the known ones (its class is named).
    """
    known, why = is_known_mixer(mixer)
    if not known:
        raise UnknownMixerError(why)
    with torch.no_grad():
        if isinstance(mixer, HYENA_PIXEL):
            return _hyena_pixel(mixer, x, grid)
        if isinstance(mixer, BidirectionalHyena):
            return _hyena_flat(mixer, x, grid)
        if isinstance(mixer, SepConv):
            return _sepconv(mixer, x.permute(0, 3, 1, 2), grid, linear=True)
        if isinstance(mixer, _timm_classes()[0]):
            return _sepconv(mixer, x, grid, linear=False)
        return _attention(mixer, x.reshape(1, -1, x.shape[-1]), grid, prefix)


def _tokens(t: torch.Tensor) -> torch.Tensor:
    """``(1, C, h, w)`` or ``(1, C, L)`` -> ``(N, C)`` float32."""
    return t[0].reshape(t.shape[1], -1).T.float()


def _output_parts(mixer: nn.Module) -> dict:
    """The output norm and projection of a Hyena mixer as GatedConvContribution fields."""
    parts: dict = {}
    norm = getattr(mixer, "out_norm", None)
    if norm is not None:
        parts.update(norm_weight=norm.weight.float(), norm_bias=None, norm_eps=norm.eps)
    proj = mixer.out_proj
    weight = proj.weight.reshape(proj.weight.shape[0], -1)  # Linear or 1x1 Conv2d
    parts.update(proj_weight=weight.float(), proj_bias=None if proj.bias is None else proj.bias.float())
    return parts


def _centre(kernel: torch.Tensor) -> tuple[int, ...]:
    return tuple(k // 2 for k in kernel.shape[1:])


def _hyena_pixel(mixer, x: torch.Tensor, grid) -> GatedConvContribution:
    h = mixer.depthwise_conv(mixer.pointwise_conv(x.permute(0, 3, 1, 2)))
    q, k, v = h.split(mixer.dim, dim=1)
    u = mixer._norm_qk(q * k)
    kernel = mixer.effective_kernel()
    separable = isinstance(mixer, HyenaPixelSeparable)
    offset = _tokens(mixer.long_convolution(torch.zeros_like(u))) if separable else None
    skip = None if separable else mixer.long_conv.bias.reshape(-1).float()
    return GatedConvContribution(
        signal=_tokens(u),
        kernel=kernel,
        centre=_centre(kernel),
        grid=grid,
        gate=_tokens(v),
        skip=skip,
        offset=offset,
        **_output_parts(mixer),
    )


def _hyena_flat(mixer, x: torch.Tensor, grid) -> GatedConvContribution:
    B, H, W, C = x.shape
    u = mixer.in_proj(x.reshape(B, H * W, C)).transpose(1, 2)
    x0, x1, v = mixer.split_qkv(mixer._short_filter(u))
    signal = mixer._norm_qk(v * x1)
    kernel = mixer.effective_kernel()
    centre = (0,) if isinstance(mixer, CausalHyena) else _centre(kernel)
    parts = _output_parts(mixer)
    if not isinstance(mixer, BidirectionalHyenaNorm):
        parts.pop("norm_weight", None)
    return GatedConvContribution(
        signal=_tokens(signal),
        kernel=kernel,
        centre=centre,
        grid=grid,
        gate=_tokens(x0),
        skip=mixer.filter_fn.bias.reshape(-1).float(),
        **parts,
    )


def _sepconv(mixer, x_nchw: torch.Tensor, grid, linear: bool) -> GatedConvContribution:
    if linear:  # this package's: Linear layers on channels-last tokens
        a = mixer.act1(mixer.pwconv1(x_nchw.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
    else:  # timm's: 1x1 convs on NCHW maps
        a = mixer.act1(mixer.pwconv1(x_nchw))
    dw = mixer.dwconv
    weight = dw.weight[:, 0].float()  # cross-correlation weight (C, k, k)
    kernel = weight.flip(-2, -1)  # as a true convolution
    centre = tuple(kernel.shape[1 + a_] - 1 - dw.padding[a_] for a_ in range(2))
    proj = mixer.pwconv2
    offset = None if dw.bias is None else dw.bias.float().expand(grid[0] * grid[1], -1)
    return GatedConvContribution(
        signal=_tokens(a),
        kernel=kernel,
        centre=centre,
        grid=grid,
        offset=offset,
        proj_weight=proj.weight.reshape(proj.weight.shape[0], -1).float(),
        proj_bias=None if proj.bias is None else proj.bias.float(),
    )


def _attention(mixer, x: torch.Tensor, grid, prefix: int) -> AttentionContribution:
    n = x.shape[1]
    heads = mixer.num_heads
    head_dim = mixer.head_dim
    qkv = mixer.qkv(x).reshape(1, n, 3, heads, head_dim).permute(2, 0, 3, 1, 4)[:, 0].float()
    q, k = qkv[0], qkv[1]
    q = getattr(mixer, "q_norm", nn.Identity())(q)
    k = getattr(mixer, "k_norm", nn.Identity())(k)
    scale = getattr(mixer, "scale", head_dim**-0.5)
    w_v = mixer.qkv.weight[2 * heads * head_dim :].float()  # (H * d, C)
    w_o = mixer.proj.weight.float()  # (C_out, H * d)
    values_v = (x[0].float() @ w_v.T).reshape(n, heads, head_dim).transpose(0, 1)  # (H, N, d)
    w_o_heads = w_o.reshape(w_o.shape[0], heads, head_dim).permute(1, 2, 0)  # (H, d, C_out)
    values = values_v @ w_o_heads  # (H, N, C_out)
    rest = torch.zeros(w_o.shape[0], dtype=values.dtype, device=values.device)
    if mixer.qkv.bias is not None:
        rest = rest + w_o @ mixer.qkv.bias[2 * heads * head_dim :].float()
    if mixer.proj.bias is not None:
        rest = rest + mixer.proj.bias.float()
    return AttentionContribution(q=q * scale, k=k, values=values, rest=rest, grid=grid, prefix=prefix)
