"""HyenaPixel MetaFormer models (H_px, H_b, mixed and ablation variants), checkpoint-exact
with the published weights, exposed through timm's model API and registry.

Layout follows the published checkpoints: ``downsample_layers.{i}`` (stem and merging
convs), ``stages.{i}.{j}`` (blocks), ``norm`` and ``head``. Internally tensors are
channels-last ``(B, H, W, C)``; everything returned through timm's API is ``NCHW``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Optional, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from .layers import Downsampling, LayerNormNoBias, Mlp, MlpHead, Scale
from .mixers import (
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
from .registry import EXTRA

__all__ = ["MetaFormerBlock", "MetaFormerStage", "HyenaMetaFormer", "MODEL_CFGS", "MixerSpec"]


# ----------------------------------------------------------------------------- block/stage
class MetaFormerBlock(nn.Module):
    """``x = rs1(x) + mixer(norm1(x)); x = rs2(x) + mlp(norm2(x))`` (channels-last).

    Args:
        dim: channels.
        token_mixer: the token mixer (channels-last in and out).
        res_scale: learnable per-channel scales on the residual branches' skips.
        drop_path: stochastic depth rate.
    """

    def __init__(self, dim: int, token_mixer: nn.Module, res_scale: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = LayerNormNoBias(dim, eps=1e-6)
        self.token_mixer = token_mixer
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.res_scale1 = Scale(dim) if res_scale else nn.Identity()
        self.norm2 = LayerNormNoBias(dim, eps=1e-6)
        self.mlp = Mlp(dim)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.res_scale2 = Scale(dim) if res_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.drop_path1(self.token_mixer(self.norm1(x)))
        return self.res_scale2(x) + self.drop_path2(self.mlp(self.norm2(x)))

    def forward_at(self, x: torch.Tensor, row: int, col: int) -> torch.Tensor:
        """One output token: the token mixer sees the whole map, the MLP (which acts on each
        token alone) runs on that one token.

        Args:
            x: channels-last input ``(B, H, W, C)``.
            row: the token's row.
            col: the token's column.

        Returns:
            torch.Tensor: ``forward(x)[:, row, col]``, ``(B, C)``.
        """
        x = self.res_scale1(x) + self.drop_path1(self.token_mixer(self.norm1(x)))
        token = x[:, row, col]
        return self.res_scale2(token) + self.drop_path2(self.mlp(self.norm2(token)))


class MetaFormerStage(nn.Sequential):
    """The blocks of one stage (a plain sequence, so keys read ``stages.{i}.{j}``).

    Args:
        dim: channels.
        depth: number of blocks.
        mixer_factory: builds a fresh token mixer for each block.
        res_scale: whether the blocks have res scales.
        drop_path_rates: the stochastic depth rate of each block.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        mixer_factory: Callable[[], nn.Module],
        res_scale: bool,
        drop_path_rates: Sequence[float],
    ):
        super().__init__(
            *[
                MetaFormerBlock(dim, mixer_factory(), res_scale=res_scale, drop_path=drop_path_rates[j])
                for j in range(depth)
            ]
        )


# ----------------------------------------------------------------------------- mixer specs
@dataclass(frozen=True)
class MixerSpec:
    """How to build one stage's token mixer: a mixer class and its keyword arguments.
    ``feature_size`` (the stage's feature map at the model's training resolution) and
    ``dim`` are filled in by the model."""

    cls: type
    kwargs: dict = field(default_factory=dict)

    def build(self, dim: int, feature_size: tuple[int, int]) -> nn.Module:
        return self.cls(dim=dim, feature_size=feature_size, **self.kwargs)


def hpx_stages(cls=HyenaPixel, kernels=(111, 55, 27, 13), embs=(32, 32, 48, 64)) -> tuple[MixerSpec, ...]:
    return tuple(MixerSpec(cls, dict(kernel_size=k, emb_dim=e)) for k, e in zip(kernels, embs))


def hb_stages(cls=BidirectionalHyena, embs=(33, 33, 49, 65), orders=(64, 64, 96, 128)) -> tuple[MixerSpec, ...]:
    return tuple(MixerSpec(cls, dict(emb_dim=e, filter_order=o)) for e, o in zip(embs, orders))


SEPCONV = MixerSpec(SepConv)
ATTENTION = MixerSpec(Attention)

# Probe models (trained on the global-context probe task, hpx_analysis.probe): one stage of one
# block at 64 px (a 16 x 16 map read out at its centre unit), the same mixer code at small widths.
# The local SepConv 7x7 probe sees 31 x 31 px around the readout; the others the whole image.
PROBE_IMG_SIZE = 64
PROBE_NUM_CLASSES = 4
PROBE_COMMON = dict(
    depths=(1,),
    img_size=PROBE_IMG_SIZE,
    num_classes=PROBE_NUM_CLASSES,
    global_pool="centre",
    res_scale_stages=(),
)
PROBE_CFGS = {
    "hpx_probe": dict(
        **PROBE_COMMON, dims=(48,), mixers=(MixerSpec(HyenaPixel, dict(kernel_size=31, emb_dim=8, filter_order=32)),)
    ),
    "hb_probe": dict(
        **PROBE_COMMON, dims=(48,), mixers=(MixerSpec(BidirectionalHyena, dict(emb_dim=17, filter_order=32)),)
    ),
    "conv_probe": dict(**PROBE_COMMON, dims=(52,), mixers=(SEPCONV,)),
    "attn_probe": dict(**PROBE_COMMON, dims=(56,), mixers=(MixerSpec(Attention, dict(head_dim=14)),)),
}

# Two-stage probes: one block per stage at 128 px (32 x 32, then 16 x 16 maps, read out at the
# centre unit of the last). Each stage's mixer is chosen on its own, so which stage must carry the
# far square is known by construction: the SepConv 7x7 pair sees +-43 px around the readout
# (stem 3 + stage 0 3 x 4 + merge 1 x 4 + stage 1 3 x 8), the task places squares up to 60 px away.
PROBE_S2_IMG_SIZE = 128
PROBE_S2_COMMON = dict(
    depths=(1, 1),
    dims=(32, 64),
    img_size=PROBE_S2_IMG_SIZE,
    num_classes=PROBE_NUM_CLASSES,
    global_pool="centre",
    res_scale_stages=(),
)
PROBE_S2_HPX = (
    MixerSpec(HyenaPixel, dict(kernel_size=63, emb_dim=8, filter_order=32)),
    MixerSpec(HyenaPixel, dict(kernel_size=31, emb_dim=8, filter_order=32)),
)
PROBE_S2_CFGS = {
    "hpx_probe_s2": dict(**PROBE_S2_COMMON, mixers=(PROBE_S2_HPX[0], PROBE_S2_HPX[1])),
    "conv_probe_s2": dict(**PROBE_S2_COMMON, mixers=(SEPCONV, SEPCONV)),
    "c_hpx_probe_s2": dict(**PROBE_S2_COMMON, mixers=(SEPCONV, PROBE_S2_HPX[1])),
    "hpx_c_probe_s2": dict(**PROBE_S2_COMMON, mixers=(PROBE_S2_HPX[0], SEPCONV)),
}


# ----------------------------------------------------------------------------- model
class HyenaMetaFormer(nn.Module):
    """Four-stage MetaFormer with per-stage token mixers.

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        mixers: one :class:`MixerSpec` per stage.
        img_size: training resolution; fixes the feature-map sizes the long kernels are
            built for (``img_size / 4 / 2**i``). Inputs of any size are accepted.
        in_chans: input channels.
        num_classes: classifier outputs (0: the head returns pooled features).
        global_pool: ``avg``, ``max`` or ``centre`` (see :meth:`forward_head`).
        res_scale_stages: stages whose blocks have res scales (2 and 3 in all published models).
        drop_rate: dropout in the head.
        drop_path_rate: stochastic depth, rising linearly to this rate over the blocks.
        **kwargs: timm's factory arguments that do not apply here (ignored).

    Raises:
        ValueError: depths, dims and mixers differ in length.
    """

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        mixers: Sequence[MixerSpec],
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        res_scale_stages: Sequence[int] = (2, 3),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__()
        if len(depths) != len(dims) or len(dims) != len(mixers):
            raise ValueError("depths, dims and mixers need one entry per stage")
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.dims = tuple(dims)
        self.num_stages = len(depths)
        self.img_size = img_size
        self.feature_sizes = tuple((img_size // 2 ** (i + 2),) * 2 for i in range(self.num_stages))

        self.downsample_layers = nn.ModuleList(
            [Downsampling(in_chans, dims[0], 7, stride=4, padding=2, post_norm=True)]
            + [
                Downsampling(dims[i - 1], dims[i], 3, stride=2, padding=1, pre_norm=True)
                for i in range(1, self.num_stages)
            ]
        )
        n_blocks = sum(depths)
        dpr = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.stages = nn.ModuleList()
        self.feature_info = []
        cur = 0
        for i in range(self.num_stages):
            factory = partial(mixers[i].build, dims[i], self.feature_sizes[i])
            self.stages.append(
                MetaFormerStage(dims[i], depths[i], factory, i in res_scale_stages, dpr[cur : cur + depths[i]])
            )
            self.feature_info.append(dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}"))
            cur += depths[i]

        self.grad_checkpointing = False
        self.num_features = dims[-1]
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = MlpHead(dims[-1], num_classes, head_dropout=drop_rate)
        self.head_hidden_size = 4 * dims[-1]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- timm model API -------------------------------------------------------------
    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them
        (much less memory for gradients w.r.t. large inputs, about one extra forward).

        Args:
            enable: switch it on or off.
        """
        self.grad_checkpointing = enable

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self._blocks(self.stages[i], self.downsample_layers[i](x))

    def _blocks(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint_seq(blocks, x, use_reentrant=False)
        return blocks(x)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc2

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = MlpHead(self.num_features, num_classes).to(self.norm.weight.device)

    def forward_to_stage(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """The features entering a stage.

        Args:
            x: images ``(B, 3, H, W)``.
            stage: the stage (0 returns ``x`` itself; ``num_stages``: the last stage's output).

        Returns:
            torch.Tensor: the channels-last features entering stage ``stage`` (before its
            down-sampling).
        """
        for i in range(stage):
            x = self._stage(i, x)
        return x

    def forward_from_stage(self, x: torch.Tensor, stage: int, pre_logits: bool = False) -> torch.Tensor:
        """Continue :meth:`forward_to_stage` from a stage to the logits.

        Args:
            x: what :meth:`forward_to_stage` returned for ``stage``.
            stage: the stage to continue from.
            pre_logits: stop before the classifier (pooled, normed features).

        Returns:
            torch.Tensor: the logits ``(B, num_classes)`` (or the pre-logits).
        """
        for i in range(stage, self.num_stages):
            x = self._stage(i, x)
        return self.forward_head(x.permute(0, 3, 1, 2), pre_logits=pre_logits)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled last feature map.

        Args:
            x: images ``(B, 3, H, W)``.

        Returns:
            torch.Tensor: the last stage's output before the final norm, NCHW.
        """
        return self.forward_to_stage(x, self.num_stages).permute(0, 3, 1, 2)

    def forward_features_at(
        self, x: torch.Tensor, row: Optional[int] = None, col: Optional[int] = None
    ) -> torch.Tensor:
        """One position of the last feature map. The last block's MLP runs on that token
        only, which saves its work on all the others (what an ERF needs; same values up to
        float rounding).

        Args:
            x: images ``(B, 3, H, W)``.
            row: the row in the last feature map (None: ``H // 2``).
            col: the column (None: ``W // 2``).

        Returns:
            torch.Tensor: ``forward_features(x)[:, :, row, col]``, ``(B, C)``.
        """
        last = self.num_stages - 1
        x = self.downsample_layers[last](self.forward_to_stage(x, last))
        *head, tail = self.stages[last]
        if head:
            x = self._blocks(nn.Sequential(*head), x)
        h, w = x.shape[1:3]
        return tail.forward_at(x, h // 2 if row is None else row, w // 2 if col is None else col)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, norm and classify.

        Args:
            x: the NCHW map of :meth:`forward_features`.
            pre_logits: stop before the classifier.

        Returns:
            torch.Tensor: the logits ``(B, num_classes)``, or the features before the
            classifier. The pooling is ``global_pool``: ``avg``, ``max`` or ``centre`` (the
            single unit ``(H // 2, W // 2)``, the unit an ERF is taken at).
        """
        if self.global_pool == "centre":
            x = x[:, :, x.shape[2] // 2, x.shape[3] // 2]
        else:
            x = x.mean((2, 3)) if self.global_pool == "avg" else x.amax((2, 3))
        return self.head(self.norm(x), pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: Optional[Union[int, list[int]]] = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Per-stage feature maps (NCHW) as in timm; ``indices`` selects stages."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError("output_fmt must be NCHW or NHWC")
        take, max_index = feature_take_indices(self.num_stages, indices)
        intermediates = []
        last = max_index + 1 if stop_early else self.num_stages
        for i in range(last):
            x = self._stage(i, x)
            if i in take:
                intermediates.append(x.permute(0, 3, 1, 2) if output_fmt == "NCHW" else x)
        if intermediates_only:
            return intermediates
        return x.permute(0, 3, 1, 2), intermediates

    def prune_intermediate_layers(
        self, indices: Union[int, list[int]] = 1, prune_norm: bool = False, prune_head: bool = True
    ):
        take, max_index = feature_take_indices(self.num_stages, indices)
        self.stages = self.stages[: max_index + 1]
        self.downsample_layers = self.downsample_layers[: max_index + 1]
        self.num_stages = max_index + 1
        if prune_head or max_index < len(self.dims) - 1:
            self.norm = nn.Identity()
            self.head = MlpHead(self.dims[max_index], 0)
        return take

    # -- analysis helpers -----------------------------------------------------------
    def token_mixers(self):
        """The token mixer of every block.

        Returns:
            Iterator: ``(stage, block, mixer)`` for every block, in order.
        """
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                yield i, j, block.token_mixer


# ----------------------------------------------------------------------------- config table
S18 = dict(depths=(3, 3, 9, 3), dims=(64, 128, 320, 512))
S12 = dict(depths=(2, 2, 6, 2), dims=(64, 128, 320, 512))
S4 = dict(depths=(1, 1, 1, 1), dims=(64, 128, 320, 512))
B36 = dict(depths=(3, 12, 18, 3), dims=(128, 256, 512, 768))

MODEL_CFGS = {
    # published
    "hpx_former_s18": dict(**S18, mixers=hpx_stages()),
    "hpx_former_s18_384": dict(**S18, mixers=hpx_stages(), img_size=384),
    "hpx_former_s18_384_interpolate": dict(**S18, mixers=hpx_stages(kernels=(191, 95, 47, 23)), img_size=384),
    "hpx_former_b36": dict(**B36, mixers=hpx_stages()),
    "hb_former_s18": dict(**S18, mixers=hb_stages()),
    "hb_former_b36": dict(**B36, mixers=hb_stages(BidirectionalHyenaNorm)),
    "c_hpx_former_s18": dict(**S18, mixers=(SEPCONV, SEPCONV) + hpx_stages(HyenaPixelNoNorm)[2:]),
    "hpx_a_former_s18": dict(**S18, mixers=hpx_stages(HyenaPixelNoNorm)[:2] + (ATTENTION, ATTENTION)),
    "hb_a_former_s18": dict(**S18, mixers=hb_stages()[:2] + (ATTENTION, ATTENTION)),
    # sizes of the paper's Section 3 (no published weights)
    "hpx_former_s4": dict(**S4, mixers=hpx_stages()),
    "hpx_former_s12": dict(**S12, mixers=hpx_stages()),
    "hb_former_s4": dict(**S4, mixers=hb_stages()),
    "hb_former_s12": dict(**S12, mixers=hb_stages()),
    "convformer_s4": dict(**S4, mixers=(SEPCONV,) * 4),  # the paper's ConvFormer-S4 (Section 3)
    # ablations (no published weights)
    "hpx_explicit_former_s18": dict(**S18, mixers=hpx_stages(HyenaPixelExplicit)),
    "hpx_sep_former_s18": dict(**S18, mixers=hpx_stages(HyenaPixelSeparable)),
    "hyena_causal_former_s18": dict(**S18, mixers=hb_stages(CausalHyena)),
    **PROBE_CFGS,
    **PROBE_S2_CFGS,
}


def _cfg(hf_hub_id: Optional[str] = None, input_size=(3, 224, 224), **kwargs):
    return {
        "hf_hub_id": hf_hub_id,
        "num_classes": 1000,
        "input_size": input_size,
        "pool_size": tuple(s // 32 for s in input_size[1:]),
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "downsample_layers.0.conv",
        "classifier": "head.fc2",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "hpx_former_s18.westai_in1k": _cfg("Spravil/hpx_former_s18.westai_in1k"),
        "hpx_former_s18_384.westai_in1k_384": _cfg("Spravil/hpx_former_s18.westai_in1k_384", input_size=(3, 384, 384)),
        "hpx_former_s18_384_interpolate.westai_in1k": _cfg(
            "Spravil/hpx_former_s18.westai_in1k", input_size=(3, 384, 384)
        ),
        "hpx_former_b36.westai_in1k": _cfg("Spravil/hpx_former_b36.westai_in1k"),
        "hb_former_s18.westai_in1k": _cfg("Spravil/hb_former_s18.westai_in1k"),
        "hb_former_b36.westai_in1k": _cfg("Spravil/hb_former_b36.westai_in1k"),
        "c_hpx_former_s18.westai_in1k": _cfg("Spravil/c_hpx_former_s18.westai_in1k"),
        "hpx_a_former_s18.westai_in1k": _cfg("Spravil/hpx_a_former_s18.westai_in1k"),
        "hb_a_former_s18.westai_in1k": _cfg("Spravil/hb_a_former_s18.westai_in1k"),
        **{f"{name}.untrained": _cfg() for name in EXTRA},
        **{
            f"{name}.probe": _cfg(
                input_size=(3, PROBE_IMG_SIZE, PROBE_IMG_SIZE),
                num_classes=PROBE_NUM_CLASSES,
                pool_size=(1, 1),
                mean=(0.5, 0.5, 0.5),
                std=(0.25, 0.25, 0.25),
            )
            for name in PROBE_CFGS
        },
        **{
            f"{name}.probe": _cfg(
                input_size=(3, PROBE_S2_IMG_SIZE, PROBE_S2_IMG_SIZE),
                num_classes=PROBE_NUM_CLASSES,
                pool_size=(1, 1),
                mean=(0.5, 0.5, 0.5),
                std=(0.25, 0.25, 0.25),
            )
            for name in PROBE_S2_CFGS
        },
    }
)


def checkpoint_filter_fn(state_dict: dict, model: HyenaMetaFormer) -> dict:
    """Unwrap ``state_dict``/``model`` containers; resample 224 px filter inputs where the
    model's long kernels are larger (the ``*_384_interpolate`` variant)."""
    from .checkpoint import resample_filter_inputs, unwrap_state_dict

    return resample_filter_inputs(unwrap_state_dict(state_dict), model.state_dict())


def _create(variant: str, pretrained: bool = False, **kwargs) -> HyenaMetaFormer:
    cfg = dict(MODEL_CFGS[variant])
    cfg.update(kwargs)
    return build_model_with_cfg(
        HyenaMetaFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        **cfg,
    )


# ----------------------------------------------------------------------------- registration
@register_model
def hpx_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_former_s18", pretrained, **kwargs)


@register_model
def hpx_former_s18_384(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_former_s18_384", pretrained, **kwargs)


@register_model
def hpx_former_s18_384_interpolate(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_former_s18_384_interpolate", pretrained, **kwargs)


@register_model
def hpx_former_b36(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_former_b36", pretrained, **kwargs)


@register_model
def hb_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hb_former_s18", pretrained, **kwargs)


@register_model
def hb_former_b36(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hb_former_b36", pretrained, **kwargs)


@register_model
def c_hpx_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("c_hpx_former_s18", pretrained, **kwargs)


@register_model
def hpx_a_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_a_former_s18", pretrained, **kwargs)


@register_model
def hb_a_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hb_a_former_s18", pretrained, **kwargs)


@register_model
def hpx_former_s4(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_former_s4", pretrained, **kwargs)


@register_model
def hpx_former_s12(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_former_s12", pretrained, **kwargs)


@register_model
def hb_former_s4(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hb_former_s4", pretrained, **kwargs)


@register_model
def hb_former_s12(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hb_former_s12", pretrained, **kwargs)


@register_model
def convformer_s4(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("convformer_s4", pretrained, **kwargs)


@register_model
def hpx_explicit_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_explicit_former_s18", pretrained, **kwargs)


@register_model
def hpx_sep_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_sep_former_s18", pretrained, **kwargs)


@register_model
def hyena_causal_former_s18(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hyena_causal_former_s18", pretrained, **kwargs)


@register_model
def hpx_probe(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_probe", pretrained, **kwargs)


@register_model
def hb_probe(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hb_probe", pretrained, **kwargs)


@register_model
def conv_probe(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("conv_probe", pretrained, **kwargs)


@register_model
def attn_probe(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("attn_probe", pretrained, **kwargs)


@register_model
def hpx_probe_s2(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_probe_s2", pretrained, **kwargs)


@register_model
def conv_probe_s2(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("conv_probe_s2", pretrained, **kwargs)


@register_model
def c_hpx_probe_s2(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("c_hpx_probe_s2", pretrained, **kwargs)


@register_model
def hpx_c_probe_s2(pretrained=False, **kwargs) -> HyenaMetaFormer:
    return _create("hpx_c_probe_s2", pretrained, **kwargs)
