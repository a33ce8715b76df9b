"""A stand-alone re-implementation of the published HyenaPixel MetaFormer (H_px in every
stage), for benchmarking only.

The ERF benchmark needs a baseline that costs what the authors' own code costs, so this
module rebuilds the whole network the way the published implementation evaluates it,
operation by operation, without using any of this package's model code:

- stem and between-stage down-sampling: a strided ``Conv2d`` with a bias-free layer norm
  written out by hand (mean, biased variance, ``sqrt``, eps 1e-6) after the stem and
  before the three merging convs; the feature map is permuted to channels-last after
  every conv (``(B, H, W, C)`` between layers, as in the published code);
- blocks: ``F.layer_norm`` without bias (eps 1e-6) before the token mixer and the MLP,
  per-channel ``Scale`` modules as res scales in the stages that have them, identity
  layer scales and drop paths (rate 0);
- MLP: two bias-free ``Linear`` layers around StarReLU computed as
  ``scale * relu(x) ** 2 + bias`` through autograd;
- H_px operator: permute to ``NCHW`` and ``.contiguous()``, 1x1 ``Conv2d`` to ``3C``, 5x5
  depthwise conv, split into q, k, v, ``q * k``, a bias-free layer norm (eps 1e-5)
  applied between two permutes, ``v * long_conv(q * k)``, permute back with
  ``.contiguous()``, layer norm (eps 1e-5) and a ``Linear`` output projection;
- long convolution: the implicit filter network (1x1 convs with sine activations) is
  evaluated on the position embedding ``z`` on every forward, the window
  ``exp(-distance_map * |deltas|) + shift`` is recomputed on every forward, and the
  convolution is the published FFT convolution: float32, FFT size
  ``max(2h, kh) x max(2w, kw)``, the kernel spectrum divided by that size's area,
  ``irfft2(..., norm="forward")``, the crop ``[kh//2 : h + kh//2, kw//2 : w + kw//2]``
  and the skip term ``u * D``;
- every parameter requires grad, except ``distance_map`` (a frozen parameter, as
  published); no kernel or spectrum is ever cached.

Parameter names equal the published checkpoint names, so a state dict of this package's
``hpx_former_*`` models loads with ``strict=True``. :func:`published_style_copy` builds
the network for such a model and loads its weights.

``forward_features`` returns the last stage's feature map in ``NCHW`` before the final
norm and pooling (the published ``forward_features`` pools; this matches what
:meth:`HyenaMetaFormer.forward_features` returns, which the ERF benchmark differentiates);
``forward`` computes the logits as the published model does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PublishedStyleMetaFormer", "published_fftconv2d", "published_style_copy"]

# eps values of the published model definition
EPS_BLOCK_NORM = 1e-6  # norm1 / norm2 of every block
EPS_DOWNSAMPLE_NORM = 1e-6  # stem post-norm and merging pre-norms
EPS_MIXER_NORM = 1e-5  # qk_norm / out_norm of the H_px operator
EPS_OUTPUT_NORM = 1e-6  # final norm before the head
EPS_HEAD_NORM = 1e-5  # norm inside the classifier head
SHORT_KERNEL = 5  # depthwise conv of the H_px operator
MLP_RATIO = 4


# ----------------------------------------------------------------------------- small layers
class HandWrittenLayerNorm(nn.Module):
    """Bias-free layer norm over the last axis, spelled out step by step (the published
    down-sampling layers do not call ``F.layer_norm``)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean((-1,), keepdim=True)
        var = centred.pow(2).mean((-1,), keepdim=True)
        return centred / torch.sqrt(var + self.eps) * self.weight


class FusedLayerNormNoBias(nn.Module):
    """Bias-free layer norm over the last axis through ``F.layer_norm``."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.shape = (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.shape, weight=self.weight, bias=None, eps=self.eps)


class ConvDownsample(nn.Module):
    """Strided conv; the stem takes the NCHW image and normalises after the conv, the
    merging layers take channels-last maps, normalise, then permute to NCHW for the conv.
    The output is channels-last."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int, stem: bool):
        super().__init__()
        self.stem = stem
        self.pre_norm = nn.Identity() if stem else HandWrittenLayerNorm(in_chs, EPS_DOWNSAMPLE_NORM)
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size=kernel_size, stride=stride, padding=padding)
        self.post_norm = HandWrittenLayerNorm(out_chs, EPS_DOWNSAMPLE_NORM) if stem else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_norm(x)
        if not self.stem:
            x = x.permute(0, 3, 1, 2)
        x = self.conv(x)
        x = x.permute(0, 2, 3, 1)
        return self.post_norm(x)


class ChannelScale(nn.Module):
    """Multiplies the last axis by a learned vector (the res scales)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class AutogradStarReLU(nn.Module):
    """StarReLU with plain autograd: ``scale * relu(x) ** 2 + bias``."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.relu(x) ** 2 + self.bias


class ChannelMlp(nn.Module):
    """fc1 (C -> 4C, no bias) -> StarReLU -> dropout -> fc2 (no bias) -> dropout."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = MLP_RATIO * dim
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.act = AutogradStarReLU()
        self.drop1 = nn.Dropout(0.0)
        self.fc2 = nn.Linear(hidden, dim, bias=False)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class SquaredReLUWithModule(nn.Module):
    """``relu(x) ** 2`` via ``torch.square`` (classifier head activation)."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(self.relu(x))


class ClassifierHead(nn.Module):
    """fc1 (C -> 4C) -> squared ReLU -> LayerNorm -> dropout -> fc2."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        hidden = MLP_RATIO * dim
        self.fc1 = nn.Linear(dim, hidden)
        self.act = SquaredReLUWithModule()
        self.norm = nn.LayerNorm(hidden, eps=EPS_HEAD_NORM)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.head_dropout = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.head_dropout(self.norm(self.act(self.fc1(x)))))


# ----------------------------------------------------------------------------- long convolution
def published_fftconv2d(u: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``u (B, C, h, w)`` convolved with ``k (1, C, kh, kw)`` plus ``u * d`` the published way:
    everything in float32, an ``max(2h, kh) x max(2w, kw)`` FFT, the kernel spectrum scaled
    by ``1 / (hh * ww)`` and the inverse transform unnormalised (``norm="forward"``),
    cropped to the centred ``h x w`` window. The result has ``u``'s dtype."""
    out_dtype = u.dtype
    u, k, d = u.float(), k.float(), d.float()
    h, w = u.shape[-2:]
    kh, kw = k.shape[-2:]
    hh, ww = max(2 * h, kh), max(2 * w, kw)
    k_spec = torch.fft.rfft2(k, s=(hh, ww)) / (hh * ww)
    u_spec = torch.fft.rfft2(u, s=(hh, ww))
    y = torch.fft.irfft2(u_spec * k_spec, s=(hh, ww), norm="forward")
    y = y[..., kh // 2 : h + kh // 2, kw // 2 : w + kw // 2]
    return (y + u * d).to(out_dtype)


class SineActivation(nn.Module):
    """``sin(freq * x)`` with one learned frequency per channel of an NCHW map."""

    def __init__(self, channels: int):
        super().__init__()
        self.freq = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq[:, :] * x)


def _sincos_grid(channels: int, size: int) -> torch.Tensor:
    """Initial position embedding (channels, size, size): sin/cos of the column index in the
    first half of the channels, of the row index in the second half (replaced on load)."""
    half = channels // 2
    inv_freq = torch.exp(torch.arange(0.0, half, 2) * (-math.log(10000.0) / half))
    angles = torch.arange(float(size))[:, None] * inv_freq[None]  # (size, half/2)
    grid = torch.zeros(channels, size, size)
    grid[0:half:2] = torch.sin(angles).T[:, None, :]
    grid[1:half:2] = torch.cos(angles).T[:, None, :]
    grid[half::2] = torch.sin(angles).T[:, :, None]
    grid[half + 1 :: 2] = torch.cos(angles).T[:, :, None]
    return grid


def _tap_distances(size: int) -> torch.Tensor:
    """Distance of every tap centre to the kernel centre, (size, size) (replaced on load)."""
    offs = torch.arange(size, dtype=torch.float64) + 0.5 - size / 2
    return torch.sqrt(offs[:, None] ** 2 + offs[None, :] ** 2).float()


class ImplicitLongConv2d(nn.Module):
    """The H_px global filter: kernel = implicit_filter(z) * (exp(-distance_map * |deltas|) + shift),
    rebuilt on every call, applied by :func:`published_fftconv2d` with skip weight ``bias``."""

    def __init__(self, dim: int, kernel_size: int, emb_dim: int, filter_order: int):
        super().__init__()
        self.z = nn.Parameter(_sincos_grid(emb_dim, kernel_size)[None])
        self.distance_map = nn.Parameter(_tap_distances(kernel_size)[None, None], requires_grad=False)
        target, fast, slow = 1e-2, 0.3, 1.5
        rates = torch.linspace(math.log(target) / slow, math.log(target) / fast, dim)
        self.deltas = nn.Parameter(rates[None, :, None, None] / kernel_size)
        self.shift = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, dim, 1, 1))
        self.implicit_filter = nn.Sequential(
            nn.Conv2d(emb_dim, filter_order, kernel_size=1),
            SineActivation(filter_order),
            nn.Conv2d(filter_order, filter_order, kernel_size=1),
            SineActivation(filter_order),
            nn.Conv2d(filter_order, dim, kernel_size=1, bias=False),
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        kernel = self.implicit_filter(self.z)
        window = torch.exp(-self.distance_map * self.deltas.abs())
        kernel = kernel * (window + self.shift)
        return published_fftconv2d(u, kernel, self.bias)


class HyenaPixelOperatorPublishedStyle(nn.Module):
    """H_px token mixer with layer norms and a linear output (the S18/B36 form);
    channels-last in and out."""

    def __init__(self, dim: int, kernel_size: int, emb_dim: int, filter_order: int):
        super().__init__()
        self.dim = dim
        self.pointwise_conv = nn.Conv2d(dim, 3 * dim, kernel_size=1)
        self.depthwise_conv = nn.Conv2d(
            3 * dim, 3 * dim, kernel_size=SHORT_KERNEL, padding=SHORT_KERNEL // 2, groups=3 * dim
        )
        self.long_conv = ImplicitLongConv2d(dim, kernel_size, emb_dim, filter_order)
        self.qk_norm = FusedLayerNormNoBias(dim, EPS_MIXER_NORM)
        self.out_norm = FusedLayerNormNoBias(dim, EPS_MIXER_NORM)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).contiguous()
        x = self.depthwise_conv(self.pointwise_conv(x))
        q, k, v = x.split(self.dim, dim=1)
        u = q * k
        u = u.permute(0, 2, 3, 1)
        u = self.qk_norm(u)
        u = u.permute(0, 3, 1, 2)
        x = v * self.long_conv(u)
        x = x.permute(0, 2, 3, 1).contiguous()
        return self.out_proj(self.out_norm(x))


# ----------------------------------------------------------------------------- network
class PublishedStyleBlock(nn.Module):
    """``x = rs1(x) + ls1(dp1(mixer(norm1(x))))``, then the same with the MLP (channels-last)."""

    def __init__(self, dim: int, mixer: nn.Module, res_scale: bool):
        super().__init__()
        self.norm1 = FusedLayerNormNoBias(dim, EPS_BLOCK_NORM)
        self.token_mixer = mixer
        self.drop_path1 = nn.Identity()
        self.layer_scale1 = nn.Identity()
        self.res_scale1 = ChannelScale(dim) if res_scale else nn.Identity()
        self.norm2 = FusedLayerNormNoBias(dim, EPS_BLOCK_NORM)
        self.mlp = ChannelMlp(dim)
        self.drop_path2 = nn.Identity()
        self.layer_scale2 = nn.Identity()
        self.res_scale2 = ChannelScale(dim) if res_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.layer_scale1(self.drop_path1(self.token_mixer(self.norm1(x))))
        return self.res_scale2(x) + self.layer_scale2(self.drop_path2(self.mlp(self.norm2(x))))


class PublishedStyleMetaFormer(nn.Module):
    """MetaFormer with an H_px operator in every block (four stages in the published models).

    Args:
        depths, dims: blocks and channels per stage.
        kernel_sizes, emb_dims, filter_orders: the long filter of each stage.
        res_scale_stages: stages whose blocks have res scales.
        in_chans, num_classes: image channels and classifier outputs.
    """

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        kernel_sizes: Sequence[int],
        emb_dims: Sequence[int],
        filter_orders: Sequence[int],
        res_scale_stages: Sequence[int],
        in_chans: int = 3,
        num_classes: int = 1000,
    ):
        super().__init__()
        n = len(depths)
        self.num_stages = n
        chans = [in_chans, *dims]
        self.downsample_layers = nn.ModuleList(
            [ConvDownsample(chans[0], chans[1], 7, stride=4, padding=2, stem=True)]
            + [ConvDownsample(chans[i], chans[i + 1], 3, stride=2, padding=1, stem=False) for i in range(1, n)]
        )
        self.stages = nn.ModuleList(
            nn.Sequential(
                *[
                    PublishedStyleBlock(
                        dims[i],
                        HyenaPixelOperatorPublishedStyle(dims[i], kernel_sizes[i], emb_dims[i], filter_orders[i]),
                        res_scale=i in res_scale_stages,
                    )
                    for _ in range(depths[i])
                ]
            )
            for i in range(n)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=EPS_OUTPUT_NORM)
        self.head = ClassifierHead(dims[-1], num_classes)

    def _features_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_stages):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output as an NCHW map (no final norm, no pooling)."""
        return self._features_nhwc(x).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: spatial mean of the channels-last map, final LayerNorm, classifier head."""
        return self.head(self.norm(self._features_nhwc(x).mean([1, 2])))


# ----------------------------------------------------------------------------- from our model
def _check_eps(model: nn.Module) -> None:
    """Raise if an eps of ``model`` differs from the published constant it corresponds to."""
    expected = {}
    for i, ds in enumerate(model.downsample_layers):
        for name in ("pre_norm", "post_norm"):
            norm = getattr(ds, name)
            if hasattr(norm, "eps"):
                expected[f"downsample_layers.{i}.{name}"] = (norm.eps, EPS_DOWNSAMPLE_NORM)
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage):
            prefix = f"stages.{i}.{j}"
            expected[f"{prefix}.norm1"] = (block.norm1.eps, EPS_BLOCK_NORM)
            expected[f"{prefix}.norm2"] = (block.norm2.eps, EPS_BLOCK_NORM)
            expected[f"{prefix}.token_mixer.qk_norm"] = (block.token_mixer.qk_norm.eps, EPS_MIXER_NORM)
            expected[f"{prefix}.token_mixer.out_norm"] = (block.token_mixer.out_norm.eps, EPS_MIXER_NORM)
    expected["norm"] = (model.norm.eps, EPS_OUTPUT_NORM)
    expected["head.norm"] = (model.head.norm.eps, EPS_HEAD_NORM)
    bad = [f"{k}: {ours} (published {pub})" for k, (ours, pub) in expected.items() if ours != pub]
    if bad:
        raise ValueError("the model's layer-norm eps values differ from the published ones: " + "; ".join(bad))


def published_style_copy(model: nn.Module) -> PublishedStyleMetaFormer:
    """A :class:`PublishedStyleMetaFormer` with the hyper-parameters and weights of ``model``
    (an ``hpx_analysis`` ``HyenaMetaFormer`` with ``HyenaPixel`` mixers in every block),
    loaded with ``strict=True``, in eval mode, on ``model``'s device."""
    from hpx_analysis.models.metaformer import HyenaMetaFormer
    from hpx_analysis.models.mixers.hyena_pixel import HyenaPixel

    if not isinstance(model, HyenaMetaFormer):
        raise TypeError(f"expected an hpx_analysis HyenaMetaFormer, got {type(model).__name__}")
    unsupported = sorted(
        {
            f"stage {i}: {type(b.token_mixer).__name__}"
            for i, stage in enumerate(model.stages)
            for b in stage
            if type(b.token_mixer) is not HyenaPixel
        }
    )
    if unsupported:
        raise ValueError(
            "the published-style baseline supports only HyenaPixel (H_px with layer norms) "
            "token mixers in every stage; this model has " + ", ".join(unsupported)
        )
    if not isinstance(model.head.fc2, nn.Linear):
        raise ValueError("the published-style baseline needs the model's classifier head (num_classes > 0)")
    _check_eps(model)

    firsts = [stage[0] for stage in model.stages]
    filters = [b.token_mixer.long_conv for b in firsts]
    if any(f.z.shape[-2] != f.z.shape[-1] for f in filters):
        raise ValueError("the published H_px filter is square; this model has a non-square long kernel")
    baseline = PublishedStyleMetaFormer(
        depths=[len(stage) for stage in model.stages],
        dims=list(model.dims),
        kernel_sizes=[f.z.shape[-1] for f in filters],
        emb_dims=[f.z.shape[1] for f in filters],
        filter_orders=[f.implicit_filter[0].out_channels for f in filters],
        res_scale_stages=[i for i, b in enumerate(firsts) if hasattr(b.res_scale1, "scale")],
        in_chans=model.downsample_layers[0].conv.in_channels,
        num_classes=model.head.fc2.out_features,
    )
    baseline.load_state_dict(model.state_dict(), strict=True)
    device = next(model.parameters()).device
    return baseline.to(device).eval()
